/* Sample-format conversion (float32/int16 little-endian to int16), down-mixing and streaming
 * resampling to the 16 kHz mono int16 audio the ASR engine takes. */
#ifndef HK_AUDIO_CONVERT_H
#define HK_AUDIO_CONVERT_H

#include "core/common.h"

enum {
    HK_AUDIO_RATE_MIN = 8000,  /* lowest input rate hk_resampler_new accepts */
    HK_AUDIO_RATE_MAX = 48000, /* highest input rate hk_resampler_new accepts */
    HK_AUDIO_ASR_RATE = 16000, /* the rate every ASR engine takes */
};

/*
 * Converts n float32 samples stored little-endian in `in` (n * 4 bytes, any alignment) to int16:
 * full scale is [-1.0, 1.0]; values beyond it clip, NaN becomes 0. Pure function, any thread.
 */
void hk_audio_f32le_to_s16(const void *in, size_t n, int16_t *out);

/* Copies n int16 samples stored little-endian in `in` (n * 2 bytes, any alignment) to out, which
 * may not overlap it. Pure function, any thread. */
void hk_audio_s16le_to_s16(const void *in, size_t n, int16_t *out);

/*
 * Averages `channels` interleaved channels into one: `frames` frames of `in` (frames * channels
 * samples) become `frames` samples of `out`. out may equal in (in-place). channels >= 1.
 */
void hk_audio_downmix_s16(const int16_t *in, size_t frames, unsigned channels, int16_t *out);

/*
 * A streaming windowed-sinc (Kaiser) polyphase resampler for one mono int16 stream. Written here
 * rather than taken from libswresample: it is ~200 lines, needs no extra dependency (and none of
 * FFmpeg's ABI churn), and its state is explicit, so one resampler per audio session is cheap
 * (a few KB for common rates). Pass-band is flat to ~0.45 of the lower of the two rates; the
 * stop-band is attenuated by ~80 dB. Not thread-safe: one resampler belongs to one thread at a
 * time.
 */
typedef struct hk_resampler_s hk_resampler_t;

/*
 * Creates a resampler from in_rate to out_rate (both in [HK_AUDIO_RATE_MIN, HK_AUDIO_RATE_MAX]).
 * Equal rates give a pass-through. Returns 0 and sets *out (free with hk_resampler_free), HK_EINVAL
 * for a rate out of range, HK_ENOMEM.
 */
int hk_resampler_new(unsigned in_rate, unsigned out_rate, hk_resampler_t **out);

/* The most samples hk_resampler_process can write for n input samples (a safe out_cap). */
size_t hk_resampler_max_output(const hk_resampler_t *r, size_t n);

/*
 * Resamples n input samples, keeping what later output needs across calls (so chunk boundaries do
 * not matter). Writes at most out_cap samples to out and returns how many it wrote; pass
 * out_cap >= hk_resampler_max_output(r, n) to be sure nothing is dropped (extra output beyond
 * out_cap is discarded). Output lags input by the filter's half length (~1 ms).
 */
size_t hk_resampler_process(hk_resampler_t *r, const int16_t *in, size_t n, int16_t *out,
                            size_t out_cap);

/* Ends the stream: writes the output still held back by the filter (at most
 * hk_resampler_max_output(r, 0) samples) and returns the count. The resampler can then be reused
 * for a new stream. */
size_t hk_resampler_flush(hk_resampler_t *r, int16_t *out, size_t out_cap);

/* Frees the resampler. NULL is a no-op. */
void hk_resampler_free(hk_resampler_t *r);

#endif
