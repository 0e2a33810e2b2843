/* Speech-recognition engine interface: a pool of decoders shared by many audio sessions, with
 * results delivered on the event-loop thread. Backend today: PocketSphinx (asr/pocketsphinx.c). */
#ifndef HK_ASR_ENGINE_H
#define HK_ASR_ENGINE_H

#include <uv.h>
#include "core/common.h"

/*
 * Threads. Every function here is called on the loop thread (the thread running the uv_loop_t
 * given to hk_asr_engine_new), except hk_asr_engine_stats, which any thread may call. Decoding
 * runs on the engine's own worker threads, one per decoder; callbacks are always invoked on the
 * loop thread (results travel back through a uv_async_t), so callers never see a worker thread.
 * The state machines, queues and segmentation rules are described in docs/internals/asr.md.
 */

typedef struct hk_asr_engine_s hk_asr_engine_t;
typedef struct hk_asr_session_s hk_asr_session_t;

/* Engine configuration. Zero/NULL fields take the default named beside them. */
typedef struct {
    const char *hmm;    /* acoustic model dir; default HK_ASR_DEFAULT_HMM (pocketsphinx-en-us) */
    const char *lm;     /* language model; default HK_ASR_DEFAULT_LM */
    const char *dict;   /* pronunciation dictionary; default HK_ASR_DEFAULT_DICT */
    unsigned pool_size; /* decoders (= worker threads); default: online CPUs */
    double max_utterance_s;       /* an utterance is cut here even mid-speech; default 20 */
    unsigned partial_interval_ms; /* partial results at most once per this much audio; 250 */
    unsigned endpoint_ms;         /* silence after speech that ends an utterance; default 300 */
    unsigned max_hmms_per_frame;  /* search width (PocketSphinx -maxhmmpf); default 5000 */
    size_t session_queue_max_s;   /* audio one session may have queued, seconds; default 30 */
    size_t queue_max_s;           /* audio all sessions together may have queued, s; 300 */
    unsigned max_sessions;        /* open sessions at most; default pool_size * 8 */
} hk_asr_config_t;

#define HK_ASR_DEFAULT_HMM "/usr/share/pocketsphinx/model/en-us/en-us"
#define HK_ASR_DEFAULT_LM "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin"
#define HK_ASR_DEFAULT_DICT "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"

typedef enum {
    HK_ASR_PARTIAL = 1, /* the utterance's hypothesis so far; replaces the previous partial */
    HK_ASR_FINAL = 2,   /* the utterance's last word: replaces its partials, never changes */
} hk_asr_kind_t;

typedef struct {
    const char *word; /* dictionary spelling, alternate-pronunciation suffix "(2)" removed */
    double start_s;   /* seconds from the session's first sample */
    double end_s;     /* start_s < end_s; the next word starts at or after it */
    double conf;      /* posterior probability in [0, 1] */
} hk_asr_word_t;

/*
 * One result. Utterances are numbered from 0 per session (seq); each gets zero or more PARTIALs
 * and then exactly one FINAL, in that order, and utterance n+1's results follow utterance n's
 * FINAL. Only utterances that produce some output get a number. A FINAL may have empty text (and
 * no words) when the words of its partials turned out to be noise: the caller drops the segment.
 * Times are seconds of audio from the session's first fed sample. Everything points into memory
 * valid only during the callback.
 */
typedef struct {
    hk_asr_kind_t kind;
    uint64_t seq;
    double start_s, end_s;      /* FINAL: first word's start, last word's end; PARTIAL: the speech
                                   start and the audio decoded so far */
    const char *text;           /* words separated by single spaces, fillers removed */
    const hk_asr_word_t *words; /* FINAL only (NULL and 0 for PARTIAL) */
    size_t n_words;
    bool forced; /* FINAL cut at max_utterance_s rather than at a pause */
} hk_asr_result_t;

typedef struct {
    /* A result for session s. Loop thread. May call hk_asr_session_free(s). */
    void (*result_cb)(hk_asr_session_t *s, const hk_asr_result_t *r, void *user);
    /* After hk_asr_session_finish: every result has been delivered. status 0, or negative when
     * decoding failed (results may be missing). Loop thread, exactly once per finish, never after
     * hk_asr_session_free. May call hk_asr_session_free(s). */
    void (*done_cb)(hk_asr_session_t *s, int status, void *user);
} hk_asr_callbacks_t;

/* Counters for /metrics. Snapshot, consistent with itself. */
typedef struct {
    unsigned decoders;         /* pool size */
    unsigned busy_decoders;    /* decoders serving a session right now (bound or decoding) */
    unsigned sessions;         /* open sessions */
    unsigned waiting_sessions; /* sessions with queued audio and no decoder */
    uint64_t queued_samples;   /* audio queued across sessions, 16 kHz samples */
    uint64_t oldest_wait_ms;   /* age of the oldest queued audio now */
    uint64_t max_wait_ms;      /* longest any audio has waited for a decoder since start */
    uint64_t decoded_samples;  /* audio decoded since start, 16 kHz samples */
    double decode_cpu_s;       /* worker time spent decoding since start */
    uint64_t utterances;       /* FINAL results since start */
    uint64_t moves;            /* sessions resumed on a decoder that lost their stream (pre-roll
                                  replayed) since start: a measure of time-sharing */
} hk_asr_stats_t;

/*
 * Creates the engine: starts cfg->pool_size worker threads, each loading its own decoder (in
 * parallel; ~0.5 s and ~90 MB each), and waits until all are loaded, so the first session is never
 * slowed by a load. Call on the loop thread, at start (it blocks). cfg may be NULL (all defaults).
 * Returns 0 and sets *out, HK_EINVAL for a bad configuration, HK_ENOMEM, or HK_ENOTFOUND when a
 * decoder could not load its model (logged with the paths).
 */
int hk_asr_engine_new(uv_loop_t *loop, const hk_asr_config_t *cfg, hk_asr_engine_t **out);

/*
 * Stops the workers (dropping queued audio), joins them, frees the decoders and closes the engine's
 * async handle; the engine's memory is released in that handle's close callback, so run the loop
 * once more afterwards. Every session must have been freed first. NULL is a no-op. Loop thread.
 */
void hk_asr_engine_free(hk_asr_engine_t *e);

/* Fills *out with the current counters. Any thread. */
void hk_asr_engine_stats(hk_asr_engine_t *e, hk_asr_stats_t *out);

/*
 * Opens a session on the engine. cb->result_cb and cb->done_cb may be NULL. user is passed back to
 * the callbacks. Returns 0 and sets *out (free with hk_asr_session_free), HK_ELIMIT when the engine
 * cannot take another session (max_sessions open: answer WAIT), HK_ENOMEM. Loop thread.
 */
int hk_asr_session_new(hk_asr_engine_t *e, const hk_asr_callbacks_t *cb, void *user,
                       hk_asr_session_t **out);

/*
 * Queues n samples of 16 kHz mono int16 audio (copied; convert other formats with audio/convert.h)
 * for decoding and returns at once. Returns 0, HK_ETOOBIG when this session already has
 * session_queue_max_s of audio waiting (it is not keeping up: the chunk is dropped), HK_ELIMIT when
 * the engine-wide queue is full (queue_max_s; dropped too), HK_ESTATE after hk_asr_session_finish,
 * HK_ENOMEM. n == 0 is a no-op. Loop thread.
 */
int hk_asr_session_feed(hk_asr_session_t *s, const int16_t *pcm16k, size_t n);

/*
 * Declares the end of the audio: what is queued is decoded, the open utterance is ended (its FINAL
 * is delivered), then done_cb is called. Returns 0, or HK_ESTATE when already finished. Loop
 * thread.
 */
int hk_asr_session_finish(hk_asr_session_t *s);

/*
 * Closes the session: no callback is called for it afterwards and queued audio is dropped (a
 * worker still decoding it stops at its next chunk; the memory goes when the last reference
 * does). May be called from the session's own callbacks. NULL is a no-op. Loop thread.
 */
void hk_asr_session_free(hk_asr_session_t *s);

#endif
