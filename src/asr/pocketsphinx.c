/* The ASR engine (asr/engine.h) on PocketSphinx 5prealpha: a pool of decoders, one per worker
 * thread, time-shared by sessions between utterances. docs/internals/asr.md has the picture. */
#include "asr/engine.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* PocketSphinx's headers predate our warning set (old-style prototypes, unused parameters). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <pocketsphinx.h>
#include <sphinxbase/err.h>
#include <sphinxbase/feat.h>
#include <sphinxbase/cmn.h>
#pragma GCC diagnostic pop

#include "core/log.h"

#define MOD "asr"

enum {
    RATE = 16000,
    FRAME = 160,        /* samples per 10 ms decoder frame (-frate 100 at 16 kHz) */
    PIECE = FRAME,      /* samples fed per ps_process_raw call: speech onsets and ends are
                           located to one frame, and an utterance ended at a pause loses at most
                           one frame of the audio after it */
    PREROLL = RATE / 2, /* audio replayed when a session moves to another decoder: the VAD needs
                           its pre-speech window and start-speech frames again */
    CMN_MAX = 64,       /* longest cepstral vector we save per session */
};

typedef struct worker_s worker_t;

typedef struct chunk_s {
    struct chunk_s *next;
    uint64_t enq_ns; /* when it was queued, for wait-time metrics */
    size_t n;
    int16_t pcm[];
} chunk_t;

enum { EV_RESULT = 1, EV_DONE = 2 };

typedef struct event_s {
    struct event_s *next;
    hk_asr_session_t *s; /* holds a reference */
    int type;
    int status;        /* EV_DONE */
    hk_asr_result_t r; /* EV_RESULT; text, words and word strings below are owned */
    char *text;
    hk_asr_word_t *words;
    char *wordbuf;
} event_t;

/* Decoding state of a session. Owned by the worker the session is attached to; it moves between
 * workers only through e->mu (attach/park), which orders the accesses. */
typedef struct {
    uint64_t stream_base;  /* session sample that is sample 0 of the decoder's current stream */
    uint64_t spos;         /* samples fed to the decoder's current stream */
    bool in_speech;        /* the VAD is in speech: the open utterance has frames */
    uint64_t utt_start;    /* session sample where the open utterance's speech starts (estimate) */
    uint64_t next_partial; /* session sample at which the next partial is due */
    uint64_t last_end;     /* session sample where the last FINAL's last word ended */
    bool seq_assigned;     /* the open utterance has emitted something and owns cur_seq */
    uint64_t cur_seq, next_seq;
    char *last_partial;  /* text of the last partial sent for the open utterance */
    mfcc_t cmn[CMN_MAX]; /* cepstral mean carried between decoders */
    bool has_cmn;
    int16_t ring[PREROLL]; /* the last PREROLL samples fed, for replay on another decoder */
    size_t ring_head, ring_len;
    int status;
} dstate_t;

struct hk_asr_session_s {
    hk_asr_engine_t *e;
    /* Loop thread only. */
    hk_asr_callbacks_t cb;
    void *user;
    bool finish_called;
    /* Under e->mu. */
    bool closed;    /* hk_asr_session_free was called: drop audio, deliver nothing */
    bool finishing; /* finish requested: decode what is queued, end the utterance, post done */
    bool done_posted;
    int refs; /* the caller's, one per queued event, one while resident on a worker */
    chunk_t *head, *tail;
    uint64_t queued;
    worker_t *attached; /* the worker serving it now, exclusively */
    worker_t *resident; /* the worker whose decoder holds its stream (attached or parked) */
    bool in_runq;
    hk_asr_session_t *runq_next;
    hk_asr_session_t *all_prev, *all_next; /* every live session, for stats */
    /* The attached worker's. */
    dstate_t d;
};

struct worker_s {
    hk_asr_engine_t *e;
    unsigned idx;
    pthread_t thread;
    bool started;
    /* Worker thread only (after load). */
    cmd_ln_t *config;
    ps_decoder_t *ps;
    bool utt_open;            /* ps_start_utt called and not yet ended */
    mfcc_t cmn_init[CMN_MAX]; /* the model's initial cepstral mean, for new sessions */
    int cmn_len;
    int prespeech;   /* -vad_prespeech frames */
    int load_status; /* written before `loaded` is counted, read after (under mu) */
    /* Under e->mu. */
    hk_asr_session_t *attached; /* session being served (== resident) or NULL */
    hk_asr_session_t *resident; /* session whose stream the decoder holds (a reference) */
};

struct hk_asr_engine_s {
    uv_loop_t *loop;
    uv_async_t async; /* loop thread; workers only uv_async_send it */
    /* Immutable after creation. */
    hk_asr_config_t cfg;
    char *hmm, *lm, *dict;
    uint64_t session_cap, queue_cap, max_utt, partial_every; /* in samples */
    worker_t *workers;
    unsigned n_workers;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers wait here for audio, finishes, parking requests, stop */
    pthread_cond_t load_cv;
    /* Under mu. */
    bool stop;
    unsigned loaded;
    unsigned n_sessions;
    hk_asr_session_t *all;
    hk_asr_session_t *runq_head, *runq_tail; /* unattached sessions with work */
    event_t *ev_head, *ev_tail;
    uint64_t queued;
    uint64_t max_wait_ns, decoded, utterances, decode_cpu_ns, moves;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- PocketSphinx logging: warnings and errors into our log, the chatter dropped. ---- */

static void ps_log_cb(void *user, err_lvl_t lvl, const char *fmt, ...)
{
    (void)user;
    if (lvl < ERR_WARN)
        return;
    char msg[512], q[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    if (n == 0)
        return;
    hk_log_write(lvl == ERR_WARN ? HK_LOG_WARN : HK_LOG_ERROR, MOD, "op=pocketsphinx msg=%s",
                 hk_log_quote(q, sizeof q, msg));
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

/* Process-wide: PocketSphinx has one logging hook, and it also prints its whole configuration to
 * its log file at every load. err_set_logfp(NULL) does not stop that in this version, so the file
 * is /dev/null (opened once, kept for the process) and messages go through our callback. */
static void log_setup(void)
{
    FILE *null = fopen("/dev/null", "w");
    if (null)
        err_set_logfp(null);
    err_set_callback(ps_log_cb, NULL);
}

/* ---- Sessions' reference counts and queues (all under e->mu). ---- */

static void chunks_free(hk_asr_session_t *s)
{
    while (s->head) {
        chunk_t *c = s->head;
        s->head = c->next;
        s->e->queued -= c->n;
        free(c);
    }
    s->tail = NULL;
    s->queued = 0;
}

static void unref_locked(hk_asr_session_t *s)
{
    if (--s->refs > 0)
        return;
    hk_asr_engine_t *e = s->e;
    chunks_free(s);
    if (s->all_prev)
        s->all_prev->all_next = s->all_next;
    else
        e->all = s->all_next;
    if (s->all_next)
        s->all_next->all_prev = s->all_prev;
    free(s->d.last_partial);
    free(s);
}

static void runq_push(hk_asr_engine_t *e, hk_asr_session_t *s)
{
    if (s->in_runq || s->attached)
        return;
    s->in_runq = true;
    s->runq_next = NULL;
    if (e->runq_tail)
        e->runq_tail->runq_next = s;
    else
        e->runq_head = s;
    e->runq_tail = s;
    pthread_cond_broadcast(&e->work_cv);
}

/* Takes the first session of the run queue, preferring one whose stream this worker holds. */
static hk_asr_session_t *runq_take(hk_asr_engine_t *e, worker_t *w)
{
    hk_asr_session_t *prev = NULL, *s = e->runq_head;
    for (hk_asr_session_t *p = NULL, *q = e->runq_head; q; p = q, q = q->runq_next)
        if (q->resident == w) {
            prev = p;
            s = q;
            break;
        }
    if (!s)
        return NULL;
    if (prev)
        prev->runq_next = s->runq_next;
    else
        e->runq_head = s->runq_next;
    if (e->runq_tail == s)
        e->runq_tail = prev;
    s->in_runq = false;
    s->runq_next = NULL;
    return s;
}

/* s has new work (audio or a finish): its worker is woken, or it joins the run queue. */
static void wake_locked(hk_asr_engine_t *e, hk_asr_session_t *s)
{
    if (s->attached)
        pthread_cond_broadcast(&e->work_cv);
    else
        runq_push(e, s);
}

static void post_locked(hk_asr_engine_t *e, event_t *ev)
{
    ev->s->refs++;
    ev->next = NULL;
    if (e->ev_tail)
        e->ev_tail->next = ev;
    else
        e->ev_head = ev;
    e->ev_tail = ev;
}

static void event_free(event_t *ev)
{
    free(ev->text);
    free(ev->words);
    free(ev->wordbuf);
    free(ev);
}

/* Worker side: queue an event and wake the loop. */
static void post(hk_asr_engine_t *e, event_t *ev)
{
    pthread_mutex_lock(&e->mu);
    post_locked(e, ev);
    pthread_mutex_unlock(&e->mu);
    uv_async_send(&e->async);
}

/* ---- Decoding (worker thread, no lock held; touches only its decoder and s->d). ---- */

static double sec(uint64_t samples)
{
    return (double)samples / RATE;
}

static void emit_partial(worker_t *w, hk_asr_session_t *s)
{
    dstate_t *d = &s->d;
    int32 score;
    const char *hyp = ps_get_hyp(w->ps, &score);
    if (!hyp || !*hyp || (d->last_partial && strcmp(d->last_partial, hyp) == 0))
        return;
    char *copy = strdup(hyp), *text = strdup(hyp);
    event_t *ev = calloc(1, sizeof *ev);
    if (!copy || !text || !ev) {
        free(copy);
        free(text);
        free(ev);
        return; /* a partial is advisory: the final will come */
    }
    free(d->last_partial);
    d->last_partial = copy;
    if (!d->seq_assigned) {
        d->seq_assigned = true;
        d->cur_seq = d->next_seq++;
    }
    uint64_t now = d->stream_base + d->spos;
    ev->s = s;
    ev->type = EV_RESULT;
    ev->text = text;
    ev->r = (hk_asr_result_t){.kind = HK_ASR_PARTIAL,
                              .seq = d->cur_seq,
                              .start_s = sec(d->utt_start),
                              .end_s = sec(now > d->utt_start ? now : d->utt_start),
                              .text = text};
    post(w->e, ev);
}

/* Fillers (<s>, </s>, <sil>, [NOISE], ++GARBAGE++) are not words of the transcript. */
static bool is_filler(const char *wd)
{
    return wd[0] == '<' || wd[0] == '[' || wd[0] == '+' || wd[0] == '\0';
}

/* Length of the word without an alternate-pronunciation suffix: "to(2)" -> 2. */
static size_t base_len(const char *wd)
{
    size_t n = strlen(wd);
    if (n > 3 && wd[n - 1] == ')') {
        const char *p = strrchr(wd, '(');
        if (p && p > wd) {
            const char *q = p + 1;
            while (q < wd + n - 1 && *q >= '0' && *q <= '9')
                q++;
            if (q == wd + n - 1 && q > p + 1)
                return (size_t)(p - wd);
        }
    }
    return n;
}

/*
 * Ends the decoder's open utterance and, when it produced words or partials, posts its FINAL.
 * Word frames count from the decoder stream's start (ps_start_stream), which is why times map
 * through stream_base; the utterance must end at the VAD's speech->silence transition, because
 * with silence removal a later stretch of speech in the same utterance would be glued to this one
 * without the silence between them and its times would be early.
 */
static void end_utterance(worker_t *w, hk_asr_session_t *s, bool forced)
{
    dstate_t *d = &s->d;
    if (!w->utt_open)
        return;
    uint64_t t_end0 = uv_hrtime();
    if (ps_end_utt(w->ps) < 0)
        d->status = HK_EINVAL;
    uint64_t t_end1 = uv_hrtime();
    w->utt_open = false;
    d->in_speech = false;

    size_t cap = 16, n = 0, bytes = 0, bcap = 256;
    hk_asr_word_t *words = malloc(cap * sizeof *words);
    char *buf = malloc(bcap);
    size_t *offs = malloc(cap * sizeof *offs);
    bool oom = !words || !buf || !offs;
    logmath_t *lmath = ps_get_logmath(w->ps);
    uint64_t lo = d->last_end;
    /* An utterance of a frame or so (opened just before a pause, a finish or a move) has no
     * words, and PocketSphinx's lattice search logs an error for it ("Couldn't find <s> in first
     * frame"): skip it. */
    bool empty = ps_get_n_frames(w->ps) < 2;
    for (ps_seg_t *it = oom || empty ? NULL : ps_seg_iter(w->ps); it; it = ps_seg_next(it)) {
        const char *wd = ps_seg_word(it);
        if (!wd || is_filler(wd))
            continue;
        int sf, ef;
        ps_seg_frames(it, &sf, &ef);
        if (sf < 0 || ef < sf)
            continue;
        uint64_t a = d->stream_base + (uint64_t)sf * FRAME;
        uint64_t b = d->stream_base + ((uint64_t)ef + 1) * FRAME;
        if (a < lo)
            a = lo; /* a replayed pre-roll must never reach back into the last FINAL */
        if (b <= a)
            continue;
        size_t len = base_len(wd);
        if (n == cap || bytes + len + 1 > bcap) {
            size_t ncap = n == cap ? cap * 2 : cap, nb = bcap * 2 + len + 1;
            hk_asr_word_t *nw = realloc(words, ncap * sizeof *nw);
            if (nw)
                words = nw;
            size_t *no = realloc(offs, ncap * sizeof *no);
            if (no)
                offs = no;
            char *nbuf = realloc(buf, nb);
            if (nbuf)
                buf = nbuf;
            if (!nw || !no || !nbuf) {
                oom = true;
                ps_seg_free(it);
                break;
            }
            cap = ncap;
            bcap = nb;
        }
        memcpy(buf + bytes, wd, len);
        buf[bytes + len] = '\0';
        offs[n] = bytes;
        bytes += len + 1;
        int32 ascr, lscr, lback;
        int32 prob = ps_seg_prob(it, &ascr, &lscr, &lback);
        double conf = logmath_exp(lmath, prob);
        words[n++] =
            (hk_asr_word_t){.start_s = sec(a), .end_s = sec(b), .conf = conf > 1.0 ? 1.0 : conf};
        lo = b;
    }
    char *text = oom ? NULL : malloc(bytes + 1);
    event_t *ev = oom ? NULL : calloc(1, sizeof *ev);
    if (oom || !text || !ev) {
        free(words);
        free(buf);
        free(offs);
        free(text);
        free(ev);
        d->status = HK_ENOMEM;
        n = 0;
        goto reset;
    }
    size_t tl = 0;
    for (size_t i = 0; i < n; i++) {
        words[i].word = buf + offs[i];
        size_t len = strlen(words[i].word);
        if (i)
            text[tl++] = ' ';
        memcpy(text + tl, words[i].word, len);
        tl += len;
    }
    text[tl] = '\0';
    free(offs);
    if (n == 0 && !d->seq_assigned) { /* nothing said, nothing shown: no segment at all */
        free(words);
        free(buf);
        free(text);
        free(ev);
        goto reset;
    }
    if (!d->seq_assigned)
        d->cur_seq = d->next_seq++;
    ev->s = s;
    ev->type = EV_RESULT;
    ev->text = text;
    ev->words = words;
    ev->wordbuf = buf;
    ev->r = (hk_asr_result_t){.kind = HK_ASR_FINAL,
                              .seq = d->cur_seq,
                              .start_s = n ? words[0].start_s : sec(d->utt_start),
                              .end_s = n ? words[n - 1].end_s : sec(d->utt_start),
                              .text = text,
                              .words = n ? words : NULL,
                              .n_words = n,
                              .forced = forced};
    if (n)
        d->last_end = lo;
    hk_log_debug(MOD, "op=final words=%zu forced=%d trail_ms=%.0f end_utt_ms=%.1f frames=%d", n,
                 forced, n ? 1000.0 * sec(d->stream_base + d->spos - lo) : 0.0,
                 (double)(t_end1 - t_end0) / 1e6, ps_get_n_frames(w->ps));
    pthread_mutex_lock(&w->e->mu);
    w->e->utterances++;
    pthread_mutex_unlock(&w->e->mu);
    post(w->e, ev);
reset:
    d->seq_assigned = false;
    free(d->last_partial);
    d->last_partial = NULL;
}

static void start_utt(worker_t *w, hk_asr_session_t *s)
{
    if (ps_start_utt(w->ps) < 0)
        s->d.status = HK_EINVAL;
    else
        w->utt_open = true;
}

static void ring_push(dstate_t *d, const int16_t *pcm, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        d->ring[d->ring_head] = pcm[i];
        d->ring_head = (d->ring_head + 1) % PREROLL;
    }
    d->ring_len = d->ring_len + n > PREROLL ? PREROLL : d->ring_len + n;
}

/*
 * Feeds audio to the decoder one frame at a time and runs the utterance state machine:
 * silence -> speech when the VAD says so (partials from then on, every partial_every samples),
 * speech -> silence ends the utterance (FINAL), speech longer than max_utt is cut (FINAL, forced).
 * `replay` is pre-roll audio the session already counted (only the decoder's stream advances).
 */
static void decode(worker_t *w, hk_asr_session_t *s, const int16_t *pcm, size_t n, bool replay)
{
    hk_asr_engine_t *e = w->e;
    dstate_t *d = &s->d;
    for (size_t off = 0; off < n; off += PIECE) {
        size_t k = n - off < PIECE ? n - off : PIECE;
        if (!w->utt_open)
            start_utt(w, s);
        if (ps_process_raw(w->ps, pcm + off, k, FALSE, FALSE) < 0)
            d->status = HK_EINVAL;
        if (!replay)
            ring_push(d, pcm + off, k);
        d->spos += k;
        uint64_t now = d->stream_base + d->spos;
        bool sp = ps_get_in_speech(w->ps) != 0;
        if (sp && !d->in_speech) {
            /* The decoder's first frame is the VAD's pre-speech window before this point. */
            uint64_t back = (uint64_t)w->prespeech * FRAME;
            d->in_speech = true;
            d->utt_start = d->spos > back ? now - back : d->stream_base;
            if (d->utt_start < d->last_end)
                d->utt_start = d->last_end;
            d->next_partial = now + e->partial_every;
        } else if (!sp && d->in_speech) {
            end_utterance(w, s, false);
        } else if (sp && now - d->utt_start >= e->max_utt) {
            end_utterance(w, s, true);
        } else if (sp && now >= d->next_partial) {
            emit_partial(w, s);
            d->next_partial = now + e->partial_every;
        }
    }
}

/* Makes the decoder hold s's stream: ends whatever stale utterance it had, restores s's cepstral
 * mean (or the model's, for a new session), starts a stream and replays s's pre-roll. */
static void restart(worker_t *w, hk_asr_session_t *s)
{
    dstate_t *d = &s->d;
    if (w->utt_open) {
        ps_end_utt(w->ps); /* a parked session is silent: nothing to report */
        w->utt_open = false;
    }
    feat_t *fc = ps_get_feat(w->ps);
    if (fc && fc->cmn_struct && w->cmn_len > 0)
        cmn_live_set(fc->cmn_struct, d->has_cmn ? d->cmn : w->cmn_init);
    ps_start_stream(w->ps);
    uint64_t pos = d->stream_base + d->spos;
    size_t pre = d->ring_len;
    if (pos - d->last_end < pre)
        pre = (size_t)(pos - d->last_end);
    d->stream_base = pos - pre;
    d->spos = 0;
    d->in_speech = false;
    start_utt(w, s);
    if (pre > 0) {
        int16_t tmp[PREROLL];
        size_t start = (d->ring_head + PREROLL - pre) % PREROLL;
        for (size_t i = 0; i < pre; i++)
            tmp[i] = d->ring[(start + i) % PREROLL];
        decode(w, s, tmp, pre, true);
    }
}

static void save_cmn(worker_t *w, hk_asr_session_t *s)
{
    feat_t *fc = ps_get_feat(w->ps);
    if (fc && fc->cmn_struct && w->cmn_len > 0) {
        cmn_live_get(fc->cmn_struct, s->d.cmn);
        s->d.has_cmn = true;
    }
}

/* ---- Workers. ---- */

static int load(worker_t *w)
{
    hk_asr_engine_t *e = w->e;
    char post[16], hmms[16]; /* -vad_postspeech counts 10 ms frames */
    snprintf(post, sizeof post, "%u", (e->cfg.endpoint_ms + 5) / 10); /* nearest frame */
    snprintf(hmms, sizeof hmms, "%u", e->cfg.max_hmms_per_frame);
    /* The second (flat-lexicon) pass runs over the whole utterance inside ps_end_utt, so it is
     * on the path from the end of speech to the completed segment: a narrower successor window
     * and word-exit beam make it ~30% faster at the same word error rate (docs/internals/asr.md).
     */
    w->config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", e->hmm, "-lm", e->lm, "-dict", e->dict,
                            "-vad_postspeech", post, "-maxhmmpf", hmms, "-fwdflatsfwin", "5",
                            "-fwdflatwbeam", "1e-20", NULL);
    if (!w->config)
        return HK_EINVAL;
    w->ps = ps_init(w->config);
    if (!w->ps)
        return HK_ENOTFOUND;
    w->prespeech = cmd_ln_int32_r(w->config, "-vad_prespeech");
    feat_t *fc = ps_get_feat(w->ps);
    if (fc && fc->cmn_struct && fc->cmn_struct->veclen > 0 && fc->cmn_struct->veclen <= CMN_MAX) {
        w->cmn_len = fc->cmn_struct->veclen;
        cmn_live_get(fc->cmn_struct, w->cmn_init);
    }
    int32 frate = cmd_ln_int32_r(w->config, "-frate");
    float32 rate = cmd_ln_float32_r(w->config, "-samprate");
    if (frate != 100 || rate != 16000.0f) {
        hk_log_error(MOD, "op=load err=\"model must be 16 kHz, 100 frames/s\" hmm=%s", e->hmm);
        return HK_EINVAL;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    hk_asr_engine_t *e = w->e;
    int rc = load(w);
    pthread_mutex_lock(&e->mu);
    w->load_status = rc;
    e->loaded++;
    pthread_cond_broadcast(&e->load_cv);
    while (rc == 0 && !e->stop) {
        hk_asr_session_t *s = w->attached;
        if (s && s->closed) {
            /* Stop serving it; the eviction below ends its stream. */
            w->attached = NULL;
            s->attached = NULL;
            continue;
        }
        if (s && s->head) {
            chunk_t *c = s->head;
            s->head = c->next;
            if (!s->head)
                s->tail = NULL;
            s->queued -= c->n;
            e->queued -= c->n;
            uint64_t t0 = mono_ns();
            if (t0 - c->enq_ns > e->max_wait_ns)
                e->max_wait_ns = t0 - c->enq_ns;
            pthread_mutex_unlock(&e->mu);
            uint64_t c0 = cpu_ns();
            decode(w, s, c->pcm, c->n, false);
            uint64_t c1 = cpu_ns();
            pthread_mutex_lock(&e->mu);
            e->decoded += c->n;
            e->decode_cpu_ns += c1 - c0;
            free(c);
            continue;
        }
        if (s && s->finishing) {
            pthread_mutex_unlock(&e->mu);
            end_utterance(w, s, false);
            event_t *ev = calloc(1, sizeof *ev);
            pthread_mutex_lock(&e->mu);
            if (ev) {
                ev->s = s;
                ev->type = EV_DONE;
                ev->status = s->d.status;
                post_locked(e, ev);
                s->done_posted = true;
            }
            /* The stream is over: the decoder no longer holds anything of it. */
            w->attached = NULL;
            s->attached = NULL;
            s->resident = NULL;
            w->resident = NULL;
            unref_locked(s);
            pthread_mutex_unlock(&e->mu);
            uv_async_send(&e->async);
            pthread_mutex_lock(&e->mu);
            if (!ev) /* could not say done: try again */
                runq_push(e, s);
            continue;
        }
        if (s && !s->d.in_speech && e->runq_head) {
            /* Between utterances and someone is waiting: park s. Its stream stays in this decoder
             * until the decoder is needed for another session, so if s comes back here first it
             * continues seamlessly. */
            save_cmn(w, s);
            w->attached = NULL;
            s->attached = NULL;
            continue;
        }
        if (s) {
            pthread_cond_wait(&e->work_cv, &e->mu);
            continue;
        }
        if (w->resident && w->resident->closed) {
            hk_asr_session_t *r = w->resident;
            pthread_mutex_unlock(&e->mu);
            if (w->utt_open) {
                ps_end_utt(w->ps);
                w->utt_open = false;
            }
            pthread_mutex_lock(&e->mu);
            if (r->resident == w)
                r->resident = NULL;
            w->resident = NULL;
            unref_locked(r);
            continue;
        }
        s = runq_take(e, w);
        if (!s) {
            pthread_cond_wait(&e->work_cv, &e->mu);
            continue;
        }
        bool same = w->resident == s && s->resident == w;
        if (!same) {
            if (w->resident) {
                if (w->resident->resident == w)
                    w->resident->resident = NULL;
                unref_locked(w->resident);
            }
            w->resident = s;
            s->refs++;
        }
        s->resident = w;
        s->attached = w;
        w->attached = s;
        if (!same) {
            if (s->d.stream_base + s->d.spos > 0)
                e->moves++;
            pthread_mutex_unlock(&e->mu);
            restart(w, s);
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- Loop side. ---- */

static void async_cb(uv_async_t *h)
{
    hk_asr_engine_t *e = h->data;
    pthread_mutex_lock(&e->mu);
    event_t *ev = e->ev_head;
    e->ev_head = e->ev_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    while (ev) {
        event_t *next = ev->next;
        hk_asr_session_t *s = ev->s;
        /* closed is written only on this thread, so it can be read here without the lock. */
        if (!s->closed) {
            if (ev->type == EV_RESULT && s->cb.result_cb)
                s->cb.result_cb(s, &ev->r, s->user);
            else if (ev->type == EV_DONE && s->cb.done_cb)
                s->cb.done_cb(s, ev->status, s->user);
        }
        pthread_mutex_lock(&e->mu);
        unref_locked(s);
        pthread_mutex_unlock(&e->mu);
        event_free(ev);
        ev = next;
    }
}

static void engine_close_cb(uv_handle_t *h)
{
    hk_asr_engine_t *e = h->data;
    free(e->hmm);
    free(e->lm);
    free(e->dict);
    free(e);
}

/* Stops and joins the workers and frees decoders, queued events and resident references. */
static void stop_workers(hk_asr_engine_t *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_broadcast(&e->work_cv);
    pthread_mutex_unlock(&e->mu);
    for (unsigned i = 0; i < e->n_workers; i++) {
        worker_t *w = &e->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        if (w->ps) {
            if (w->utt_open)
                ps_end_utt(w->ps);
            ps_free(w->ps);
        }
        if (w->config)
            cmd_ln_free_r(w->config);
        pthread_mutex_lock(&e->mu);
        if (w->resident)
            unref_locked(w->resident);
        w->resident = w->attached = NULL;
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_lock(&e->mu);
    event_t *ev = e->ev_head;
    e->ev_head = e->ev_tail = NULL;
    while (ev) {
        event_t *next = ev->next;
        unref_locked(ev->s);
        event_free(ev);
        ev = next;
    }
    pthread_mutex_unlock(&e->mu);
    free(e->workers);
    e->workers = NULL;
    pthread_cond_destroy(&e->work_cv);
    pthread_cond_destroy(&e->load_cv);
    pthread_mutex_destroy(&e->mu);
}

int hk_asr_engine_new(uv_loop_t *loop, const hk_asr_config_t *cfg, hk_asr_engine_t **out)
{
    *out = NULL;
    hk_asr_config_t c = cfg ? *cfg : (hk_asr_config_t){0};
    if (c.pool_size == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c.pool_size = n > 0 ? (unsigned)n : 1;
    }
    if (c.max_utterance_s == 0)
        c.max_utterance_s = 20;
    if (c.partial_interval_ms == 0)
        c.partial_interval_ms = 250;
    if (c.endpoint_ms == 0)
        c.endpoint_ms = 300;
    if (c.max_hmms_per_frame == 0)
        c.max_hmms_per_frame = 5000;
    if (c.session_queue_max_s == 0)
        c.session_queue_max_s = 30;
    if (c.queue_max_s == 0)
        c.queue_max_s = 300;
    if (c.max_sessions == 0)
        c.max_sessions = c.pool_size * 8;
    if (c.pool_size > 256 || c.max_utterance_s < 1 || c.max_utterance_s > 600 ||
        c.endpoint_ms < 20 || c.endpoint_ms > 10000 || c.max_hmms_per_frame < 100 ||
        c.max_hmms_per_frame > 1000000 || c.partial_interval_ms > 60000 ||
        c.session_queue_max_s > 3600 || c.queue_max_s > 36000)
        return HK_EINVAL;

    hk_asr_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return HK_ENOMEM;
    e->loop = loop;
    e->cfg = c;
    e->hmm = strdup(c.hmm ? c.hmm : HK_ASR_DEFAULT_HMM);
    e->lm = strdup(c.lm ? c.lm : HK_ASR_DEFAULT_LM);
    e->dict = strdup(c.dict ? c.dict : HK_ASR_DEFAULT_DICT);
    e->cfg.hmm = e->hmm;
    e->cfg.lm = e->lm;
    e->cfg.dict = e->dict;
    e->session_cap = (uint64_t)c.session_queue_max_s * RATE;
    e->queue_cap = (uint64_t)c.queue_max_s * RATE;
    e->max_utt = (uint64_t)(c.max_utterance_s * RATE);
    e->partial_every = (uint64_t)c.partial_interval_ms * RATE / 1000;
    if (e->partial_every < FRAME)
        e->partial_every = FRAME;
    e->n_workers = c.pool_size;
    e->workers = calloc(c.pool_size, sizeof *e->workers);
    if (!e->hmm || !e->lm || !e->dict || !e->workers) {
        free(e->workers);
        engine_close_cb(&(uv_handle_t){.data = e});
        return HK_ENOMEM;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work_cv, NULL);
    pthread_cond_init(&e->load_cv, NULL);
    pthread_once(&log_once, log_setup);

    int rc = 0;
    unsigned started = 0;
    for (unsigned i = 0; i < c.pool_size; i++) {
        worker_t *w = &e->workers[i];
        w->e = e;
        w->idx = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            rc = HK_ENOMEM;
            break;
        }
        w->started = true;
        started++;
    }
    pthread_mutex_lock(&e->mu);
    while (e->loaded < started)
        pthread_cond_wait(&e->load_cv, &e->mu);
    for (unsigned i = 0; i < started && rc == 0; i++)
        rc = e->workers[i].load_status;
    pthread_mutex_unlock(&e->mu);
    if (rc == 0) {
        rc = uv_async_init(loop, &e->async, async_cb);
        e->async.data = e;
    }
    if (rc != 0) {
        hk_log_error(MOD, "op=engine_new hmm=%s lm=%s dict=%s err=\"%s\"", e->hmm, e->lm, e->dict,
                     hk_strerror(rc));
        stop_workers(e);
        engine_close_cb(&(uv_handle_t){.data = e});
        return rc;
    }
    hk_log_info(MOD, "op=engine_new decoders=%u hmm=%s", c.pool_size, e->hmm);
    *out = e;
    return 0;
}

void hk_asr_engine_free(hk_asr_engine_t *e)
{
    if (!e)
        return;
    stop_workers(e);
    uv_close((uv_handle_t *)&e->async, engine_close_cb);
}

void hk_asr_engine_stats(hk_asr_engine_t *e, hk_asr_stats_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t now = mono_ns();
    pthread_mutex_lock(&e->mu);
    out->decoders = e->n_workers;
    for (unsigned i = 0; i < e->n_workers; i++)
        out->busy_decoders += e->workers[i].attached != NULL;
    out->sessions = e->n_sessions;
    uint64_t oldest = now;
    for (hk_asr_session_t *s = e->all; s; s = s->all_next) {
        if (s->closed)
            continue;
        if (s->head && !s->attached)
            out->waiting_sessions++;
        if (s->head && s->head->enq_ns < oldest)
            oldest = s->head->enq_ns;
    }
    out->queued_samples = e->queued;
    out->oldest_wait_ms = (now - oldest) / 1000000u;
    out->max_wait_ms = e->max_wait_ns / 1000000u;
    out->decoded_samples = e->decoded;
    out->decode_cpu_s = (double)e->decode_cpu_ns / 1e9;
    out->utterances = e->utterances;
    out->moves = e->moves;
    pthread_mutex_unlock(&e->mu);
}

int hk_asr_session_new(hk_asr_engine_t *e, const hk_asr_callbacks_t *cb, void *user,
                       hk_asr_session_t **out)
{
    *out = NULL;
    pthread_mutex_lock(&e->mu);
    bool full = e->n_sessions >= e->cfg.max_sessions || e->queued >= e->queue_cap;
    pthread_mutex_unlock(&e->mu);
    if (full)
        return HK_ELIMIT;
    hk_asr_session_t *s = calloc(1, sizeof *s);
    if (!s)
        return HK_ENOMEM;
    s->e = e;
    if (cb)
        s->cb = *cb;
    s->user = user;
    s->refs = 1;
    pthread_mutex_lock(&e->mu);
    s->all_next = e->all;
    if (e->all)
        e->all->all_prev = s;
    e->all = s;
    e->n_sessions++;
    pthread_mutex_unlock(&e->mu);
    *out = s;
    return 0;
}

int hk_asr_session_feed(hk_asr_session_t *s, const int16_t *pcm16k, size_t n)
{
    if (s->finish_called)
        return HK_ESTATE;
    if (n == 0)
        return 0;
    hk_asr_engine_t *e = s->e;
    pthread_mutex_lock(&e->mu);
    int rc = s->queued + n > e->session_cap ? HK_ETOOBIG
             : e->queued + n > e->queue_cap ? HK_ELIMIT
                                            : 0;
    pthread_mutex_unlock(&e->mu);
    if (rc)
        return rc;
    chunk_t *c = malloc(sizeof *c + n * sizeof *pcm16k);
    if (!c)
        return HK_ENOMEM;
    c->next = NULL;
    c->n = n;
    c->enq_ns = mono_ns();
    memcpy(c->pcm, pcm16k, n * sizeof *pcm16k);
    pthread_mutex_lock(&e->mu);
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->queued += n;
    e->queued += n;
    wake_locked(e, s);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int hk_asr_session_finish(hk_asr_session_t *s)
{
    if (s->finish_called)
        return HK_ESTATE;
    s->finish_called = true;
    hk_asr_engine_t *e = s->e;
    pthread_mutex_lock(&e->mu);
    if (!s->attached && !s->head) {
        /* Never fed, or parked between utterances (so silent): nothing left to decode. */
        event_t *ev = calloc(1, sizeof *ev);
        if (ev) {
            ev->s = s;
            ev->type = EV_DONE;
            post_locked(e, ev);
            s->done_posted = true;
            pthread_mutex_unlock(&e->mu);
            uv_async_send(&e->async);
            return 0;
        }
    }
    s->finishing = true;
    wake_locked(e, s);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void hk_asr_session_free(hk_asr_session_t *s)
{
    if (!s)
        return;
    hk_asr_engine_t *e = s->e;
    pthread_mutex_lock(&e->mu);
    s->closed = true;
    e->n_sessions--;
    chunks_free(s);
    if (s->in_runq) {
        hk_asr_session_t *p = NULL, *q = e->runq_head;
        while (q && q != s)
            p = q, q = q->runq_next;
        if (q) {
            if (p)
                p->runq_next = s->runq_next;
            else
                e->runq_head = s->runq_next;
            if (e->runq_tail == s)
                e->runq_tail = p;
        }
        s->in_runq = false;
    }
    /* A worker serving or holding it notices `closed` and lets go of it. */
    pthread_cond_broadcast(&e->work_cv);
    unref_locked(s);
    pthread_mutex_unlock(&e->mu);
}
