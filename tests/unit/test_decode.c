/* Unit tests for src/audio/decode: files made by ffmpeg at test time (WAV 44.1 kHz stereo, MP3,
 * Ogg Vorbis, a video with and without an audio track) decode to 16 kHz mono of the right length
 * and pitch; bad inputs (text named .wav, empty, missing, a directory) give their own errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "audio/decode.h"
#include "core/log.h"

static char dir[64];
static bool have_ffmpeg;

typedef struct {
    size_t samples, chunks, short_chunks;
    size_t crossings; /* sign changes: 2 per period of a sine */
    int16_t prev;
    double last_progress;
    bool progress_monotonic;
    int64_t energy;
    int stop_after; /* > 0: return 42 after this many chunks */
} sink_t;

static int sink_cb(const int16_t *pcm, size_t n, double progress, void *user)
{
    sink_t *s = user;
    assert_true(n > 0 && n <= HK_DECODE_CHUNK);
    if (n < HK_DECODE_CHUNK)
        s->short_chunks++;
    for (size_t i = 0; i < n; i++) {
        if ((pcm[i] >= 0) != (s->prev >= 0))
            s->crossings++;
        s->prev = pcm[i];
        s->energy += (int64_t)pcm[i] * pcm[i] / 1024;
    }
    if (progress < s->last_progress)
        s->progress_monotonic = false;
    s->last_progress = progress;
    s->samples += n;
    s->chunks++;
    if (s->stop_after > 0 && (int)s->chunks >= s->stop_after)
        return 42;
    return 0;
}

static void sink_init(sink_t *s)
{
    memset(s, 0, sizeof(*s));
    s->last_progress = -1;
    s->progress_monotonic = true;
}

static int ffmpeg(const char *args, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -y %s %s/%s", args, dir, name);
    return system(cmd);
}

static const char *path_of(const char *name)
{
    static char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

static int setup(void **state)
{
    (void)state;
    hk_log_init(HK_LOG_ERROR, NULL);
    snprintf(dir, sizeof(dir), "/tmp/hark-decode-test-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    have_ffmpeg = system("ffmpeg -version >/dev/null 2>&1") == 0;
    if (!have_ffmpeg)
        return 0;
    /* 2 s of 440 Hz at 44.1 kHz, the same tone on both channels. */
    if (ffmpeg("-f lavfi -i sine=frequency=440:sample_rate=44100:duration=2 -ac 2", "tone.wav") ||
        ffmpeg("-f lavfi -i sine=frequency=440:sample_rate=22050:duration=3 -c:a libmp3lame",
               "tone.mp3") ||
        ffmpeg("-f lavfi -i sine=frequency=440:sample_rate=48000:duration=2.5 -c:a libvorbis",
               "tone.ogg") ||
        ffmpeg("-f lavfi -i testsrc=duration=2:size=160x120:rate=10 -f lavfi -i "
               "sine=frequency=300:sample_rate=48000:duration=2 -c:v mpeg4 -c:a aac -shortest",
               "video.mp4") ||
        ffmpeg("-f lavfi -i testsrc=duration=1:size=160x120:rate=10 -c:v mpeg4", "silent.mp4"))
        return -1;
    FILE *f = fopen(path_of("text.wav"), "w");
    if (!f)
        return -1;
    fputs("This is not audio, only a text file with a .wav name.\n", f);
    fclose(f);
    f = fopen(path_of("empty.wav"), "w");
    if (!f)
        return -1;
    fclose(f);
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Decodes name and checks its length against seconds (±tol_s) and its pitch against hz. */
static void decode_ok(const char *name, double seconds, double tol_s, double hz,
                      hk_decode_info_t *info)
{
    if (!have_ffmpeg)
        skip();
    sink_t s;
    sink_init(&s);
    char err[256] = "x";
    int rc = hk_audio_decode_file(path_of(name), sink_cb, &s, info, err, sizeof(err));
    if (rc)
        fail_msg("%s: %s (%s)", name, err, hk_strerror(rc));
    assert_string_equal(err, "");
    double got_s = (double)s.samples / 16000.0;
    if (got_s < seconds - tol_s || got_s > seconds + tol_s)
        fail_msg("%s: decoded %.4f s, want %.4f ± %.4f s", name, got_s, seconds, tol_s);
    assert_true(s.short_chunks <= 1); /* only the last chunk may be short */
    assert_true(s.progress_monotonic);
    assert_true(s.last_progress > 0.99 && s.last_progress <= 1.0);
    assert_true(s.energy > 0);
    /* Pitch survives resampling: two sign changes per period. */
    double f = (double)s.crossings / 2.0 / got_s;
    if (f < hz * 0.97 || f > hz * 1.03)
        fail_msg("%s: pitch %.1f Hz, want %.1f", name, f, hz);
    assert_true(info->duration_s > seconds - 0.1 && info->duration_s < seconds + 0.1);
}

static void test_wav_44k_stereo(void **state)
{
    (void)state;
    hk_decode_info_t info;
    decode_ok("tone.wav", 2.0, 0.005, 440, &info);
    assert_int_equal(info.in_rate, 44100);
    assert_int_equal(info.in_channels, 2);
    assert_string_equal(info.container, "wav");
}

static void test_mp3(void **state)
{
    (void)state;
    hk_decode_info_t info;
    decode_ok("tone.mp3", 3.0, 0.06, 440, &info); /* MP3 frames pad the end */
    assert_int_equal(info.in_rate, 22050);
    assert_string_equal(info.codec, "mp3float");
}

static void test_ogg_vorbis(void **state)
{
    (void)state;
    hk_decode_info_t info;
    decode_ok("tone.ogg", 2.5, 0.03, 440, &info);
    assert_int_equal(info.in_rate, 48000);
    assert_string_equal(info.codec, "vorbis");
}

static void test_video_audio_track(void **state)
{
    (void)state;
    hk_decode_info_t info;
    decode_ok("video.mp4", 2.0, 0.06, 300, &info);
    assert_string_equal(info.codec, "aac");
}

/* Decodes a bad input; checks the code and that the message holds `want`. */
static void decode_bad(const char *path, int code, const char *want)
{
    sink_t s;
    sink_init(&s);
    char err[256] = "";
    int rc = hk_audio_decode_file(path, sink_cb, &s, NULL, err, sizeof(err));
    if (rc != code || !strstr(err, want))
        fail_msg("%s: got %d \"%s\", want %d \"%s\"", path, rc, err, code, want);
    assert_int_equal(s.samples, 0);
}

static void test_video_without_audio(void **state)
{
    (void)state;
    if (!have_ffmpeg)
        skip();
    decode_bad(path_of("silent.mp4"), HK_ENOTFOUND, "no audio stream");
}

static void test_text_named_wav(void **state)
{
    (void)state;
    decode_bad(path_of("text.wav"), HK_EINVAL, "not a media file");
}

static void test_empty_file(void **state)
{
    (void)state;
    decode_bad(path_of("empty.wav"), HK_EINVAL, "empty file");
}

static void test_missing_file(void **state)
{
    (void)state;
    decode_bad(path_of("nope.wav"), UV_ENOENT, "file not found");
    decode_bad("/nonexistent-dir/x/y.mp3", UV_ENOENT, "file not found");
}

static void test_directory(void **state)
{
    (void)state;
    decode_bad(dir, UV_EISDIR, "cannot read");
}

static void test_callback_stops(void **state)
{
    (void)state;
    if (!have_ffmpeg)
        skip();
    sink_t s;
    sink_init(&s);
    s.stop_after = 2;
    char err[256] = "";
    int rc = hk_audio_decode_file(path_of("tone.wav"), sink_cb, &s, NULL, err, sizeof(err));
    assert_int_equal(rc, 42);
    assert_int_equal(s.chunks, 2);
    assert_string_equal(err, ""); /* the callback's own code, no message */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav_44k_stereo),      cmocka_unit_test(test_mp3),
        cmocka_unit_test(test_ogg_vorbis),          cmocka_unit_test(test_video_audio_track),
        cmocka_unit_test(test_video_without_audio), cmocka_unit_test(test_text_named_wav),
        cmocka_unit_test(test_empty_file),          cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_directory),           cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
