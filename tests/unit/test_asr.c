/* Unit tests for src/asr: the PocketSphinx engine decodes LibriVox clips from pocketsphinx-testdata
 * streamed in 100 ms chunks, delivers partials before finals on the loop thread with sane times,
 * gives the same words for float32 and 48 kHz input, shares one decoder between two sessions,
 * and enforces its queue caps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "asr/engine.h"
#include "audio/convert.h"

#define CLIPS "/usr/share/pocketsphinx/test/data/librivox/"
#define CLIP_LONG "sense_and_sensibility_01_austen_64kb-0870"
#define CLIP_A "sense_and_sensibility_01_austen_64kb-0880"
#define CLIP_B "sense_and_sensibility_01_austen_64kb-0930"
#define CHUNK 1600 /* 100 ms at 16 kHz */

/* ---- Helpers: WAV reading, reference transcripts, word error rate. ---- */

typedef struct {
    int16_t *pcm;
    size_t n;
} clip_t;

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads a PCM WAV file, converting it to 16 kHz mono int16 whatever its rate and channels. */
static clip_t read_wav(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, CLIPS "%s.wav", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    assert_true(len > 44);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    assert_memory_equal(b, "RIFF", 4);
    assert_memory_equal(b + 8, "WAVE", 4);
    unsigned rate = 0, channels = 0, bits = 0;
    const unsigned char *data = NULL;
    size_t data_len = 0;
    for (size_t off = 12; off + 8 <= (size_t)len;) {
        uint32_t sz = le32(b + off + 4);
        if (memcmp(b + off, "fmt ", 4) == 0) {
            channels = b[off + 10] | b[off + 11] << 8;
            rate = le32(b + off + 12);
            bits = b[off + 22] | b[off + 23] << 8;
        } else if (memcmp(b + off, "data", 4) == 0) {
            data = b + off + 8;
            data_len = sz <= (size_t)len - off - 8 ? sz : (size_t)len - off - 8;
            break;
        }
        off += 8 + sz + (sz & 1);
    }
    assert_non_null(data);
    assert_int_equal(bits, 16);
    size_t frames = data_len / 2 / channels;
    int16_t *pcm = malloc(frames * channels * sizeof *pcm);
    assert_non_null(pcm);
    hk_audio_s16le_to_s16(data, frames * channels, pcm);
    hk_audio_downmix_s16(pcm, frames, channels, pcm);
    clip_t c = {pcm, frames};
    if (rate != 16000) {
        hk_resampler_t *r;
        assert_int_equal(hk_resampler_new(rate, 16000, &r), 0);
        size_t cap = hk_resampler_max_output(r, frames) + hk_resampler_max_output(r, 0);
        c.pcm = malloc(cap * sizeof *c.pcm);
        assert_non_null(c.pcm);
        c.n = hk_resampler_process(r, pcm, frames, c.pcm, cap);
        c.n += hk_resampler_flush(r, c.pcm + c.n, cap - c.n);
        hk_resampler_free(r);
        free(pcm);
    }
    free(b);
    return c;
}

/* The reference transcript of a clip, from the test data's `transcription` file. */
static char *reference(const char *name)
{
    FILE *f = fopen(CLIPS "transcription", "r");
    assert_non_null(f);
    char line[1024], id[128];
    snprintf(id, sizeof id, "(%s)", name);
    char *out = NULL;
    while (!out && fgets(line, sizeof line, f)) {
        char *p = strstr(line, id);
        if (!p)
            continue;
        *p = '\0';
        char *s = line, *e;
        if (strncmp(s, "<s> ", 4) == 0)
            s += 4;
        if ((e = strstr(s, "</s>")) != NULL)
            *e = '\0';
        out = strdup(s);
    }
    fclose(f);
    assert_non_null(out);
    return out;
}

static size_t split(const char *text, char ***words)
{
    size_t n = 0, cap = 8;
    char **w = malloc(cap * sizeof *w);
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (!*p)
            break;
        const char *q = p;
        while (*q && *q != ' ' && *q != '\n')
            q++;
        if (n == cap)
            w = realloc(w, (cap *= 2) * sizeof *w);
        w[n++] = strndup(p, (size_t)(q - p));
        p = q;
    }
    *words = w;
    return n;
}

/* Word error rate of hyp against ref: (substitutions + deletions + insertions) / ref words. */
static double wer(const char *ref, const char *hyp)
{
    char **r, **h;
    size_t nr = split(ref, &r), nh = split(hyp, &h);
    size_t *prev = malloc((nh + 1) * sizeof *prev), *cur = malloc((nh + 1) * sizeof *cur);
    for (size_t j = 0; j <= nh; j++)
        prev[j] = j;
    for (size_t i = 1; i <= nr; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nh; j++) {
            size_t sub = prev[j - 1] + (strcmp(r[i - 1], h[j - 1]) != 0);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    double d = nr ? (double)prev[nh] / (double)nr : (double)nh;
    for (size_t i = 0; i < nr; i++)
        free(r[i]);
    for (size_t j = 0; j < nh; j++)
        free(h[j]);
    free(r);
    free(h);
    free(prev);
    free(cur);
    return d;
}

/* ---- Running sessions on the loop. ---- */

typedef struct {
    hk_asr_kind_t kind;
    uint64_t seq;
    double start_s, end_s;
    char *text;
    size_t n_words;
    bool words_ok; /* the words lie inside [start_s, end_s], increasing, not overlapping */
} rec_t;

typedef struct {
    uv_loop_t *loop;
    hk_asr_session_t *s;
    const int16_t *pcm;
    size_t n, fed;
    uv_timer_t timer;
    rec_t recs[256];
    size_t n_recs;
    int done_calls, done_status;
    char text[4096]; /* the finals, joined */
    uv_thread_t loop_thread;
    bool wrong_thread;
} run_t;

static void result_cb(hk_asr_session_t *s, const hk_asr_result_t *r, void *user)
{
    run_t *run = user;
    assert_ptr_equal(s, run->s);
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &run->loop_thread))
        run->wrong_thread = true;
    assert_true(run->n_recs < HK_ARRAY_SIZE(run->recs));
    rec_t *rec = &run->recs[run->n_recs++];
    rec->kind = r->kind;
    rec->seq = r->seq;
    rec->start_s = r->start_s;
    rec->end_s = r->end_s;
    rec->text = strdup(r->text);
    rec->n_words = r->n_words;
    rec->words_ok = true;
    for (size_t i = 0; i < r->n_words; i++) {
        const hk_asr_word_t *w = &r->words[i];
        if (w->start_s >= w->end_s || w->start_s < r->start_s - 1e-9 ||
            w->end_s > r->end_s + 1e-9 || (i && w->start_s < r->words[i - 1].end_s - 1e-9) ||
            strchr(w->word, '(') || w->conf < 0 || w->conf > 1)
            rec->words_ok = false;
    }
    if (r->kind == HK_ASR_FINAL && r->text[0]) {
        size_t l = strlen(run->text);
        snprintf(run->text + l, sizeof run->text - l, "%s%s", l ? " " : "", r->text);
    }
}

static void done_cb(hk_asr_session_t *s, int status, void *user)
{
    run_t *run = user;
    assert_ptr_equal(s, run->s);
    run->done_calls++;
    run->done_status = status;
}

static void feed_tick(uv_timer_t *t)
{
    run_t *run = t->data;
    size_t k = run->n - run->fed < CHUNK ? run->n - run->fed : CHUNK;
    if (k > 0) {
        assert_int_equal(hk_asr_session_feed(run->s, run->pcm + run->fed, k), 0);
        run->fed += k;
    }
    if (run->fed == run->n) {
        assert_int_equal(hk_asr_session_finish(run->s), 0);
        assert_int_equal(hk_asr_session_feed(run->s, run->pcm, 1), HK_ESTATE);
        uv_timer_stop(t);
    }
}

static const hk_asr_callbacks_t callbacks = {result_cb, done_cb};

static void run_start(run_t *run, hk_asr_engine_t *e, uv_loop_t *loop, const int16_t *pcm, size_t n)
{
    memset(run, 0, sizeof *run);
    run->loop = loop;
    run->pcm = pcm;
    run->n = n;
    run->loop_thread = uv_thread_self();
    assert_int_equal(hk_asr_session_new(e, &callbacks, run, &run->s), 0);
    uv_timer_init(loop, &run->timer);
    run->timer.data = run;
    /* One 100 ms chunk per millisecond: faster than real time, still many separate feeds. */
    uv_timer_start(&run->timer, feed_tick, 0, 1);
}

static void run_wait(run_t **runs, size_t n)
{
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && runs[i]->done_calls > 0;
        if (all)
            break;
        uv_run(runs[0]->loop, UV_RUN_ONCE);
    }
    for (size_t i = 0; i < n; i++) {
        uv_close((uv_handle_t *)&runs[i]->timer, NULL);
        hk_asr_session_free(runs[i]->s);
    }
    uv_run(runs[0]->loop, UV_RUN_NOWAIT);
}

static void run_dispose(run_t *run)
{
    for (size_t i = 0; i < run->n_recs; i++)
        free(run->recs[i].text);
}

/* Checks the result stream's invariants: partials before their final, one final per seq, seqs
 * in order, finals increasing and not overlapping within the clip. Returns the partial count. */
static size_t check_results(const run_t *run, double clip_s)
{
    assert_int_equal(run->done_calls, 1);
    assert_int_equal(run->done_status, 0);
    assert_false(run->wrong_thread);
    size_t partials = 0;
    uint64_t next_seq = 0;
    double last_end = 0.0;
    for (size_t i = 0; i < run->n_recs; i++) {
        const rec_t *r = &run->recs[i];
        assert_int_equal(r->seq, next_seq); /* results of seq n come after n-1's final */
        if (r->kind == HK_ASR_PARTIAL) {
            partials++;
            assert_true(r->text[0] != '\0');
            assert_int_equal(r->n_words, 0);
            continue;
        }
        assert_int_equal(r->kind, HK_ASR_FINAL);
        assert_true(r->words_ok);
        if (r->n_words > 0) {
            assert_true(r->start_s >= last_end - 1e-9);
            assert_true(r->start_s < r->end_s);
            assert_true(r->end_s <= clip_s + 0.02);
            last_end = r->end_s;
        }
        next_seq++;
    }
    assert_true(next_seq > 0);
    return partials;
}

/* ---- Fixtures. ---- */

typedef struct {
    uv_loop_t loop;
    hk_asr_engine_t *e;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    hk_asr_config_t cfg = {.pool_size = 1};
    if (hk_asr_engine_new(&f->loop, &cfg, &f->e) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    hk_asr_engine_free(f->e);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* Decodes a whole clip in one session and returns its joined final text (caller frees). */
static char *decode_clip(fixture_t *f, const int16_t *pcm, size_t n, size_t *partials)
{
    run_t *run = malloc(sizeof *run);
    run_start(run, f->e, &f->loop, pcm, n);
    run_wait(&run, 1);
    size_t p = check_results(run, (double)n / 16000.0);
    if (partials)
        *partials = p;
    char *text = strdup(run->text);
    run_dispose(run);
    free(run);
    return text;
}

/* ---- Tests. ---- */

static void test_clip_partials_finals_and_wer(void **state)
{
    fixture_t *f = *state;
    clip_t c = read_wav(CLIP_LONG);
    char *ref = reference(CLIP_LONG);
    hk_asr_stats_t before, after;
    hk_asr_engine_stats(f->e, &before);
    uint64_t t0 = uv_hrtime();
    size_t partials;
    char *text = decode_clip(f, c.pcm, c.n, &partials);
    double wall = (double)(uv_hrtime() - t0) / 1e9;
    hk_asr_engine_stats(f->e, &after);
    double audio = (double)c.n / 16000.0, w = wer(ref, text);
    double cpu = after.decode_cpu_s - before.decode_cpu_s;
    printf("# clip %s (%.2f s)\n#  ref: %s\n#  hyp: %s\n#  WER %.1f%%, partials %zu, decode cpu "
           "%.2f s (%.2fx real time), wall %.2f s\n",
           CLIP_LONG, audio, ref, text, 100.0 * w, partials, cpu, cpu / audio, wall);
    assert_true(partials >= 2);
    assert_true(w < 0.40);
    assert_int_equal(after.decoded_samples - before.decoded_samples, c.n);
    assert_true(after.utterances > before.utterances);
    assert_int_equal(after.sessions, 0);
    assert_int_equal(after.queued_samples, 0);
    free(text);
    free(ref);
    free(c.pcm);
}

static void test_float32_and_48k_input(void **state)
{
    fixture_t *f = *state;
    clip_t c = read_wav(CLIP_A);
    char *ref = reference(CLIP_A);
    char *t16 = decode_clip(f, c.pcm, c.n, NULL);

    /* float32 little-endian, as a client would send it, converted back. */
    unsigned char *fb = malloc(c.n * 4);
    int16_t *back = malloc(c.n * sizeof *back);
    for (size_t i = 0; i < c.n; i++) {
        float v = (float)c.pcm[i] / 32768.0f;
        uint32_t u;
        memcpy(&u, &v, 4);
        for (int b = 0; b < 4; b++)
            fb[i * 4 + b] = (unsigned char)(u >> (8 * b));
    }
    hk_audio_f32le_to_s16(fb, c.n, back);
    char *tf = decode_clip(f, back, c.n, NULL);
    assert_string_equal(tf, t16);

    /* The clip up-sampled to 48 kHz, then converted back to 16 kHz in 10 ms chunks. */
    hk_resampler_t *up, *down;
    assert_int_equal(hk_resampler_new(16000, 48000, &up), 0);
    assert_int_equal(hk_resampler_new(48000, 16000, &down), 0);
    size_t cap48 = hk_resampler_max_output(up, c.n) + hk_resampler_max_output(up, 0);
    int16_t *x48 = malloc(cap48 * sizeof *x48);
    size_t n48 = hk_resampler_process(up, c.pcm, c.n, x48, cap48);
    n48 += hk_resampler_flush(up, x48 + n48, cap48 - n48);
    size_t cap16 = hk_resampler_max_output(down, n48) + hk_resampler_max_output(down, 0);
    int16_t *x16 = malloc(cap16 * sizeof *x16);
    size_t n16 = 0;
    for (size_t off = 0; off < n48; off += 480) {
        size_t k = n48 - off < 480 ? n48 - off : 480;
        n16 += hk_resampler_process(down, x48 + off, k, x16 + n16, cap16 - n16);
    }
    n16 += hk_resampler_flush(down, x16 + n16, cap16 - n16);
    char *t48 = decode_clip(f, x16, n16, NULL);
    printf("#  16k: %s\n#  f32: %s\n#  48k: %s\n#  WER 16k %.1f%%, 48k %.1f%%, 48k vs 16k %.1f%%\n",
           t16, tf, t48, 100 * wer(ref, t16), 100 * wer(ref, t48), 100 * wer(t16, t48));
    assert_true(wer(t16, t48) <= 0.25);

    hk_resampler_free(up);
    hk_resampler_free(down);
    free(x48);
    free(x16);
    free(fb);
    free(back);
    free(t16);
    free(tf);
    free(t48);
    free(ref);
    free(c.pcm);
}

/* first + `gap` seconds of faint noise + second, as one recording. */
static clip_t join(const clip_t *first, double gap, const clip_t *second)
{
    size_t ng = (size_t)(gap * 16000);
    clip_t c = {malloc((first->n + ng + second->n) * sizeof(int16_t)), first->n + ng + second->n};
    assert_non_null(c.pcm);
    memcpy(c.pcm, first->pcm, first->n * sizeof(int16_t));
    uint32_t x = 12345;
    for (size_t i = 0; i < ng; i++) {
        x = x * 1103515245u + 12345u;
        c.pcm[first->n + i] = (int16_t)((int)(x >> 16) % 9 - 4);
    }
    memcpy(c.pcm + first->n + ng, second->pcm, second->n * sizeof(int16_t));
    return c;
}

/* The start of the first FINAL at or after t seconds, or -1. */
static double final_after(const run_t *run, double t)
{
    for (size_t i = 0; i < run->n_recs; i++)
        if (run->recs[i].kind == HK_ASR_FINAL && run->recs[i].n_words && run->recs[i].start_s >= t)
            return run->recs[i].start_s;
    return -1;
}

static void test_two_sessions_share_one_decoder(void **state)
{
    fixture_t *f = *state;
    clip_t a = read_wav(CLIP_A), b = read_wav(CLIP_B);
    const double gap = 1.5;
    clip_t x = join(&a, gap, &b), y = join(&b, gap, &a);
    char *tx = decode_clip(f, x.pcm, x.n, NULL);
    char *ty = decode_clip(f, y.pcm, y.n, NULL);

    /*
     * Both at once on the pool of one. X gets the decoder; Y's audio waits in its queue until X
     * pauses between its two utterances, when X is parked and Y takes the decoder; X then resumes
     * on a restarted stream (pre-roll replayed, cepstral mean restored) when Y pauses.
     */
    run_t *rx = malloc(sizeof *rx), *ry = malloc(sizeof *ry);
    run_start(rx, f->e, &f->loop, x.pcm, x.n);
    run_start(ry, f->e, &f->loop, y.pcm, y.n);
    hk_asr_stats_t st, st0;
    hk_asr_engine_stats(f->e, &st0);
    assert_int_equal(st0.sessions, 2);
    assert_int_equal(st0.decoders, 1);
    run_t *both[] = {rx, ry};
    run_wait(both, 2);
    check_results(rx, (double)x.n / 16000.0);
    check_results(ry, (double)y.n / 16000.0);
    hk_asr_engine_stats(f->e, &st);
    double bx = final_after(rx, (double)a.n / 16000.0 + gap - 0.1);
    double by = final_after(ry, (double)b.n / 16000.0 + gap - 0.1);
    printf("#  X alone:  %s\n#  X shared: %s\n#  Y alone:  %s\n#  Y shared: %s\n"
           "#  second utterance starts at %.2f s (X), %.2f s (Y); max wait %llu ms\n",
           tx, rx->text, ty, ry->text, bx, by, (unsigned long long)st.max_wait_ms);
    assert_true(wer(tx, rx->text) <= 0.2);
    assert_true(wer(ty, ry->text) <= 0.2);
    /* The second clip's words are placed after the gap, where they are in the recording. */
    assert_true(bx > 0 && bx < (double)a.n / 16000.0 + gap + 1.0);
    assert_true(by > 0 && by < (double)b.n / 16000.0 + gap + 1.0);
    hk_asr_engine_stats(f->e, &st);
    assert_int_equal(st.sessions, 0);
    assert_true(st.max_wait_ms > 0);
    assert_true(st.moves > st0.moves); /* X really was parked and resumed */

    run_dispose(rx);
    run_dispose(ry);
    free(rx);
    free(ry);
    free(tx);
    free(ty);
    free(x.pcm);
    free(y.pcm);
    free(a.pcm);
    free(b.pcm);
}

static void test_empty_session_only_done(void **state)
{
    fixture_t *f = *state;
    run_t *run = calloc(1, sizeof *run);
    run->loop = &f->loop;
    run->loop_thread = uv_thread_self();
    assert_int_equal(hk_asr_session_new(f->e, &callbacks, run, &run->s), 0);
    assert_int_equal(hk_asr_session_feed(run->s, NULL, 0), 0);
    assert_int_equal(hk_asr_session_finish(run->s), 0);
    assert_int_equal(hk_asr_session_finish(run->s), HK_ESTATE);
    assert_int_equal(run->done_calls, 0); /* never from inside finish */
    while (run->done_calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(run->done_calls, 1);
    assert_int_equal(run->done_status, 0);
    assert_int_equal(run->n_recs, 0);
    hk_asr_session_free(run->s);
    free(run);
}

static void test_free_mid_stream_delivers_nothing(void **state)
{
    fixture_t *f = *state;
    clip_t c = read_wav(CLIP_B);
    run_t *run = calloc(1, sizeof *run);
    run->loop_thread = uv_thread_self();
    assert_int_equal(hk_asr_session_new(f->e, &callbacks, run, &run->s), 0);
    assert_int_equal(hk_asr_session_feed(run->s, c.pcm, c.n), 0);
    hk_asr_session_free(run->s); /* while the worker decodes it */
    /* Let the worker notice; nothing may reach the callbacks. */
    for (int i = 0; i < 50; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uv_sleep(10);
    }
    assert_int_equal(run->n_recs, 0);
    assert_int_equal(run->done_calls, 0);
    free(run);
    free(c.pcm);
}

static void test_queue_caps(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_asr_engine_t *e;
    hk_asr_config_t cfg = {
        .pool_size = 1, .session_queue_max_s = 2, .queue_max_s = 1, .max_sessions = 1};
    assert_int_equal(hk_asr_engine_new(&loop, &cfg, &e), 0);
    hk_asr_session_t *s, *s2;
    assert_int_equal(hk_asr_session_new(e, &callbacks, NULL, &s), 0);
    /* A second session while the first is open: the engine is full (answer WAIT). */
    assert_int_equal(hk_asr_session_new(e, &callbacks, NULL, &s2), HK_ELIMIT);
    assert_null(s2);
    int16_t *pcm = calloc(16000 * 3, sizeof *pcm);
    /* More than the session may queue; then more than the engine may queue. */
    assert_int_equal(hk_asr_session_feed(s, pcm, 16000 * 2 + 1), HK_ETOOBIG);
    assert_int_equal(hk_asr_session_feed(s, pcm, 16000 + 1600), HK_ELIMIT);
    assert_int_equal(hk_asr_session_feed(s, pcm, 1600), 0);
    hk_asr_session_free(s);
    assert_int_equal(hk_asr_session_new(e, &callbacks, NULL, &s2), 0);
    hk_asr_session_free(s2);
    hk_asr_engine_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(pcm);
}

static void test_bad_model_path_fails(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_asr_engine_t *e = (hk_asr_engine_t *)1;
    hk_asr_config_t cfg = {.pool_size = 1, .hmm = "/nonexistent/model"};
    assert_true(hk_asr_engine_new(&loop, &cfg, &e) < 0);
    assert_null(e);
    cfg = (hk_asr_config_t){.pool_size = 1, .max_utterance_s = 0.5};
    assert_int_equal(hk_asr_engine_new(&loop, &cfg, &e), HK_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_partials_finals_and_wer),
        cmocka_unit_test(test_float32_and_48k_input),
        cmocka_unit_test(test_two_sessions_share_one_decoder),
        cmocka_unit_test(test_empty_session_only_done),
        cmocka_unit_test(test_free_mid_stream_delivers_nothing),
    };
    const struct CMUnitTest standalone[] = {
        cmocka_unit_test(test_queue_caps),
        cmocka_unit_test(test_bad_model_path_fails),
    };
    int failed = cmocka_run_group_tests_name("asr_engine", tests, setup, teardown);
    failed += cmocka_run_group_tests_name("asr_limits", standalone, NULL, NULL);
    return failed;
}
