/* Sample-format conversion, down-mixing and a streaming polyphase windowed-sinc resampler. */
#include "audio/convert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    ZERO_CROSSINGS = 16,   /* sinc lobes kept on each side, at the lower of the two rates */
    SLICE = 4096,          /* input samples buffered per step: bounds the history buffer */
    TABLE_MAX = 64 * 1024, /* coefficients precomputed at most; beyond, computed per output */
};
#define KAISER_BETA 8.0 /* ~80 dB side-lobe attenuation */
#define CUTOFF 0.92     /* pass-band edge as a fraction of the lower Nyquist frequency */

static inline int16_t clip16(float v)
{
    if (!(v == v)) /* NaN */
        return 0;
    if (v >= 32767.0f)
        return 32767;
    if (v <= -32768.0f)
        return -32768;
    return (int16_t)lrintf(v);
}

void hk_audio_f32le_to_s16(const void *in, size_t n, int16_t *out)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++, p += 4) {
        /* Assemble the bits explicitly so the input needs no alignment and the host any order. */
        uint32_t u =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        float f;
        memcpy(&f, &u, sizeof f);
        out[i] = clip16(f * 32768.0f);
    }
}

void hk_audio_s16le_to_s16(const void *in, size_t n, int16_t *out)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++, p += 2)
        out[i] = (int16_t)(uint16_t)((unsigned)p[0] | (unsigned)p[1] << 8);
}

void hk_audio_downmix_s16(const int16_t *in, size_t frames, unsigned channels, int16_t *out)
{
    if (channels <= 1) {
        if (out != in)
            memmove(out, in, frames * sizeof *out);
        return;
    }
    for (size_t i = 0; i < frames; i++) {
        int32_t sum = 0;
        for (unsigned c = 0; c < channels; c++)
            sum += in[i * channels + c];
        out[i] = (int16_t)(sum / (int32_t)channels);
    }
}

struct hk_resampler_s {
    unsigned in_rate, out_rate;
    unsigned L, M; /* out/in = L/M in lowest terms */
    unsigned half; /* H: taps on each side of the output instant, in input samples */
    double rc;     /* cutoff, relative to the input rate (1.0 = input Nyquist * 2) */
    float *table;  /* L phases x 2H taps, or NULL: computed per output (very large L) */
    float *coef;   /* scratch for one phase when table is NULL */
    float *hist;   /* input history; hist[base] is the sample at or before the next output time */
    size_t hist_len, hist_cap;
    size_t base;
    unsigned phase; /* next output time = base + phase / L */
};

static unsigned gcd(unsigned a, unsigned b)
{
    while (b) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0;
    for (int k = 1; k < 50; k++) {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
        if (term < sum * 1e-12)
            break;
    }
    return sum;
}

/* Fills the 2H taps for output instants `phase / L` past an input sample, normalised to unit DC
 * gain so that a constant stays exactly constant whatever the phase. */
static void make_phase(const hk_resampler_t *r, unsigned phase, float *taps)
{
    const double frac = (double)phase / r->L, h = r->half, i0b = bessel_i0(KAISER_BETA);
    double sum = 0.0;
    for (unsigned j = 0; j < 2 * r->half; j++) {
        /* tap j weighs input sample base + k with k = j - H + 1; distance t = frac - k */
        double t = frac - ((double)j - h + 1.0);
        double x = t / h, w = 0.0;
        if (x > -1.0 && x < 1.0)
            w = bessel_i0(KAISER_BETA * sqrt(1.0 - x * x)) / i0b;
        double u = M_PI * r->rc * t;
        double s = fabs(u) < 1e-9 ? 1.0 : sin(u) / u;
        taps[j] = (float)(r->rc * s * w);
        sum += taps[j];
    }
    for (unsigned j = 0; j < 2 * r->half; j++)
        taps[j] = (float)(taps[j] / sum);
}

static void reset_stream(hk_resampler_t *r)
{
    /* H zeros stand for the silence before the stream, so the first output has left context. */
    memset(r->hist, 0, r->half * sizeof *r->hist);
    r->hist_len = r->half;
    r->base = r->half;
    r->phase = 0;
}

int hk_resampler_new(unsigned in_rate, unsigned out_rate, hk_resampler_t **out)
{
    *out = NULL;
    if (in_rate < HK_AUDIO_RATE_MIN || in_rate > HK_AUDIO_RATE_MAX ||
        out_rate < HK_AUDIO_RATE_MIN || out_rate > HK_AUDIO_RATE_MAX)
        return HK_EINVAL;
    hk_resampler_t *r = calloc(1, sizeof *r);
    if (!r)
        return HK_ENOMEM;
    unsigned g = gcd(in_rate, out_rate);
    r->in_rate = in_rate;
    r->out_rate = out_rate;
    r->L = out_rate / g;
    r->M = in_rate / g;
    double ratio = r->L < r->M ? (double)r->L / r->M : 1.0;
    r->rc = CUTOFF * ratio;
    r->half = (unsigned)ceil(ZERO_CROSSINGS / ratio);
    size_t taps = 2 * (size_t)r->half;
    r->hist_cap = taps + SLICE + 1;
    r->hist = malloc(r->hist_cap * sizeof *r->hist);
    if (r->L * taps <= TABLE_MAX)
        r->table = malloc(r->L * taps * sizeof *r->table);
    else
        r->coef = malloc(taps * sizeof *r->coef);
    if (!r->hist || (!r->table && !r->coef)) {
        hk_resampler_free(r);
        return HK_ENOMEM;
    }
    if (r->table)
        for (unsigned p = 0; p < r->L; p++)
            make_phase(r, p, r->table + p * taps);
    reset_stream(r);
    *out = r;
    return 0;
}

size_t hk_resampler_max_output(const hk_resampler_t *r, size_t n)
{
    if (r->L == r->M)
        return n;
    return (size_t)(((uint64_t)n + 2 * r->half + 1) * r->L / r->M) + 2;
}

/* Produces every output whose right context is in the history, then drops history no longer
 * needed. Returns the number written (output past out_cap is computed and discarded). */
static size_t drain(hk_resampler_t *r, int16_t *out, size_t out_cap)
{
    const size_t taps = 2 * (size_t)r->half;
    size_t n = 0;
    while (r->base + r->half < r->hist_len) {
        const float *c;
        if (r->table) {
            c = r->table + (size_t)r->phase * taps;
        } else {
            make_phase(r, r->phase, r->coef);
            c = r->coef;
        }
        const float *x = r->hist + r->base + 1 - r->half;
        float acc = 0.0f;
        for (size_t j = 0; j < taps; j++)
            acc += x[j] * c[j];
        if (n < out_cap)
            out[n++] = clip16(acc);
        r->phase += r->M;
        r->base += r->phase / r->L;
        r->phase %= r->L;
    }
    if (r->base + 1 > r->half) {
        size_t drop = r->base + 1 - r->half;
        if (drop > r->hist_len)
            drop = r->hist_len;
        memmove(r->hist, r->hist + drop, (r->hist_len - drop) * sizeof *r->hist);
        r->hist_len -= drop;
        r->base -= drop;
    }
    return n;
}

size_t hk_resampler_process(hk_resampler_t *r, const int16_t *in, size_t n, int16_t *out,
                            size_t out_cap)
{
    if (r->L == r->M) {
        size_t k = n < out_cap ? n : out_cap;
        memcpy(out, in, k * sizeof *out);
        return k;
    }
    size_t written = 0;
    while (n > 0) {
        size_t k = n < SLICE ? n : SLICE;
        for (size_t i = 0; i < k; i++)
            r->hist[r->hist_len + i] = in[i];
        r->hist_len += k;
        written += drain(r, out + written, out_cap - written);
        in += k;
        n -= k;
    }
    return written;
}

size_t hk_resampler_flush(hk_resampler_t *r, int16_t *out, size_t out_cap)
{
    if (r->L == r->M)
        return 0;
    /* H zeros after the end give the last real input instants their right context. */
    memset(r->hist + r->hist_len, 0, r->half * sizeof *r->hist);
    r->hist_len += r->half;
    size_t n = drain(r, out, out_cap);
    reset_stream(r);
    return n;
}

void hk_resampler_free(hk_resampler_t *r)
{
    if (!r)
        return;
    free(r->table);
    free(r->coef);
    free(r->hist);
    free(r);
}
