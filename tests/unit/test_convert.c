/* Unit tests for src/audio/convert: float32/int16 decoding with clipping, down-mixing, and the
 * streaming resampler keeping frequency and amplitude whatever the chunking. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "audio/convert.h"

static void test_f32_to_s16_scales_and_clips(void **state)
{
    (void)state;
    const float in[] = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 1.5f, -3.0f, NAN, 1e30f, 0.25f};
    unsigned char bytes[sizeof in + 1];
    /* Little-endian bytes at an odd address: the decoder must not need alignment. */
    for (size_t i = 0; i < HK_ARRAY_SIZE(in); i++) {
        uint32_t u;
        memcpy(&u, &in[i], 4);
        for (int b = 0; b < 4; b++)
            bytes[1 + i * 4 + b] = (unsigned char)(u >> (8 * b));
    }
    int16_t out[HK_ARRAY_SIZE(in)];
    hk_audio_f32le_to_s16(bytes + 1, HK_ARRAY_SIZE(in), out);
    const int16_t want[] = {0, 16384, -16384, 32767, -32768, 32767, -32768, 0, 32767, 8192};
    for (size_t i = 0; i < HK_ARRAY_SIZE(in); i++)
        assert_int_equal(out[i], want[i]);
}

static void test_s16le_passthrough_and_downmix(void **state)
{
    (void)state;
    const unsigned char bytes[] = {0x00, 0x01, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f};
    int16_t out[4];
    hk_audio_s16le_to_s16(bytes, 4, out);
    assert_int_equal(out[0], 256);
    assert_int_equal(out[1], -1);
    assert_int_equal(out[2], -32768);
    assert_int_equal(out[3], 32767);

    int16_t st[] = {100, 300, -32768, -32768, 32767, 32767};
    hk_audio_downmix_s16(st, 3, 2, st); /* in place */
    assert_int_equal(st[0], 200);
    assert_int_equal(st[1], -32768);
    assert_int_equal(st[2], 32767);
}

static void test_resampler_rejects_bad_rates(void **state)
{
    (void)state;
    hk_resampler_t *r = (hk_resampler_t *)1;
    assert_int_equal(hk_resampler_new(4000, 16000, &r), HK_EINVAL);
    assert_null(r);
    assert_int_equal(hk_resampler_new(16000, 96000, &r), HK_EINVAL);
    hk_resampler_free(NULL);
}

/* Counts sign changes and the peak of x after the filter's start-up. */
static void measure(const int16_t *x, size_t n, size_t skip, size_t *crossings, int *peak)
{
    *crossings = 0;
    *peak = 0;
    for (size_t i = skip + 1; i < n; i++) {
        if ((x[i - 1] < 0) != (x[i] < 0))
            (*crossings)++;
        int a = abs(x[i]);
        if (a > *peak)
            *peak = a;
    }
}

/* Resamples 1 s of a sine at `rate` to 16 kHz in chunks of `chunk`, then checks the output length,
 * frequency (zero crossings) and amplitude. */
static void check_sine(unsigned rate, double freq, size_t chunk)
{
    hk_resampler_t *r;
    assert_int_equal(hk_resampler_new(rate, 16000, &r), 0);
    size_t n = rate;
    int16_t *in = malloc(n * sizeof *in);
    size_t cap = hk_resampler_max_output(r, n) + hk_resampler_max_output(r, 0);
    int16_t *out = malloc(cap * sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        in[i] = (int16_t)lrint(16000.0 * sin(2.0 * M_PI * freq * (double)i / rate));
    size_t got = 0;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        assert_true(got + hk_resampler_max_output(r, k) <= cap);
        got += hk_resampler_process(r, in + off, k, out + got, cap - got);
    }
    got += hk_resampler_flush(r, out + got, cap - got);
    /* 1 s in, 1 s out, give or take a sample of rounding. */
    assert_true(got >= 15999 && got <= 16001);
    size_t zc;
    int peak;
    measure(out, got, 200, &zc, &peak);
    /* A sine of f Hz crosses zero 2f times a second (minus the skipped start). */
    double want = 2.0 * freq * (got - 201) / 16000.0;
    assert_true(fabs((double)zc - want) <= 2.0);
    assert_true(peak > 16000 * 0.97 && peak < 16000 * 1.03);
    hk_resampler_free(r);
    free(in);
    free(out);
}

static void test_resampler_keeps_frequency_and_amplitude(void **state)
{
    (void)state;
    check_sine(48000, 440.0, 480);    /* 10 ms chunks */
    check_sine(48000, 3000.0, 1);     /* one sample at a time */
    check_sine(44100, 1000.0, 4410);  /* rational ratio 160/441 */
    check_sine(8000, 440.0, 7);       /* upsampling, odd chunks */
    check_sine(22050, 2500.0, 10000); /* chunk beyond the internal slice */
    check_sine(47999, 1000.0, 333);   /* co-prime rate: coefficients computed on the fly */
}

static void test_resampler_removes_aliases(void **state)
{
    (void)state;
    /* 12 kHz cannot exist at 16 kHz: it must be filtered out, not folded down to 4 kHz. */
    hk_resampler_t *r;
    assert_int_equal(hk_resampler_new(48000, 16000, &r), 0);
    int16_t in[4800], out[4800];
    for (size_t i = 0; i < 4800; i++)
        in[i] = (int16_t)lrint(16000.0 * sin(2.0 * M_PI * 12000.0 * (double)i / 48000));
    size_t got = hk_resampler_process(r, in, 4800, out, HK_ARRAY_SIZE(out));
    size_t zc;
    int peak;
    measure(out, got, 200, &zc, &peak);
    assert_true(peak < 16000 / 100); /* at least 40 dB down */
    hk_resampler_free(r);
}

static void test_resampler_same_rate_is_passthrough(void **state)
{
    (void)state;
    hk_resampler_t *r;
    assert_int_equal(hk_resampler_new(16000, 16000, &r), 0);
    int16_t in[5] = {1, -2, 3, -4, 5}, out[5];
    assert_int_equal(hk_resampler_process(r, in, 5, out, 5), 5);
    assert_memory_equal(in, out, sizeof in);
    assert_int_equal(hk_resampler_flush(r, out, 5), 0);
    hk_resampler_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_to_s16_scales_and_clips),
        cmocka_unit_test(test_s16le_passthrough_and_downmix),
        cmocka_unit_test(test_resampler_rejects_bad_rates),
        cmocka_unit_test(test_resampler_keeps_frequency_and_amplitude),
        cmocka_unit_test(test_resampler_removes_aliases),
        cmocka_unit_test(test_resampler_same_rate_is_passthrough),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
