/* Unit tests for src/pipeline/formats: the exact JSON, txt, SRT and WebVTT renderings of small
 * transcripts, including ordering, escaping, null speakers, long times and zero-length cues; and
 * the merge of stored and live segments. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pipeline/formats.h"

#define T0 1795342503120LL /* 2026-11-22T10:15:03.120Z */

static hk_segment_view_t seg(const char *id, double start, double end, const char *text,
                             const char *speaker)
{
    hk_segment_view_t v = {
        .segment_id = id,
        .start = start,
        .end = end,
        .text = text,
        .speaker = speaker,
        .language = "en",
        .completed = true,
    };
    return v;
}

/* Given in scrambled order: the renderers sort by start, then segment_id. */
static hk_segment_view_t sample[5];

static hk_transcript_t sample_transcript(void)
{
    sample[0] = seg("m:1:2", 5.5, 7.25, "Second & <b>bold</b> --> here", "Bob <dev>");
    sample[1] = seg("m:1:1", 1.0, 2.5, "Hello\r\n\r\n  world ", "Alice");
    sample[2] = seg("m:1:0", 5.5, 5.5, "zero length", NULL); /* same start as m:1:2 */
    sample[3] = seg("m:1:9", 360000.123, 360002.5, "long", "  ");
    sample[4] = seg("m:1:5", 9.0, 9.5, " \t\n ", "Alice"); /* nothing to show */
    hk_transcript_t t = {sample, 5};
    return t;
}

/* Renders t as f and compares with expect (NULL: nothing written). */
static void assert_render(const hk_transcript_t *t, hk_format_t f, const char *expect)
{
    hk_buf_t b;
    hk_buf_init(&b, 1 << 20);
    assert_int_equal(hk_format_render(t, f, &b), 0);
    if (!expect) {
        assert_null(b.data);
    } else {
        assert_non_null(b.data);
        if (strcmp(b.data, expect) != 0)
            print_error("got:\n%s\nexpected:\n%s\n", b.data, expect);
        assert_string_equal(b.data, expect);
        assert_int_equal(b.len, strlen(expect));
    }
    hk_buf_dispose(&b);
}

static void test_parse_and_names(void **state)
{
    (void)state;
    hk_format_t f;
    assert_int_equal(hk_format_parse("json", &f), 0);
    assert_int_equal(f, HK_FORMAT_JSON);
    assert_int_equal(hk_format_parse("TXT", &f), 0);
    assert_int_equal(f, HK_FORMAT_TXT);
    assert_int_equal(hk_format_parse("srt", &f), 0);
    assert_int_equal(f, HK_FORMAT_SRT);
    assert_int_equal(hk_format_parse("Vtt", &f), 0);
    assert_int_equal(f, HK_FORMAT_VTT);
    assert_int_equal(hk_format_parse("pdf", &f), HK_EINVAL);
    assert_int_equal(hk_format_parse("", &f), HK_EINVAL);
    assert_int_equal(hk_format_parse("vtt ", &f), HK_EINVAL);
    assert_int_equal(hk_format_parse(NULL, &f), HK_EINVAL);
    assert_string_equal(hk_format_content_type(HK_FORMAT_TXT), "text/plain; charset=utf-8");
    assert_string_equal(hk_format_content_type(HK_FORMAT_SRT),
                        "application/x-subrip; charset=utf-8");
    assert_string_equal(hk_format_content_type(HK_FORMAT_VTT), "text/vtt; charset=utf-8");
    assert_string_equal(hk_format_content_type(HK_FORMAT_JSON), "application/json; charset=utf-8");
    assert_string_equal(hk_format_extension(HK_FORMAT_SRT), "srt");
    assert_null(hk_format_extension((hk_format_t)42));
}

static void test_txt(void **state)
{
    (void)state;
    hk_transcript_t t = sample_transcript();
    assert_render(&t, HK_FORMAT_TXT,
                  "[00:00:01] Alice: Hello world\n"
                  "[00:00:05] zero length\n"
                  "[00:00:05] Bob <dev>: Second & <b>bold</b> --> here\n"
                  "[100:00:00] long\n");
}

static void test_srt(void **state)
{
    (void)state;
    hk_transcript_t t = sample_transcript();
    assert_render(&t, HK_FORMAT_SRT,
                  "1\n"
                  "00:00:01,000 --> 00:00:02,500\n"
                  "Alice: Hello\n"
                  "world\n"
                  "\n"
                  "2\n"
                  "00:00:05,500 --> 00:00:05,501\n"
                  "zero length\n"
                  "\n"
                  "3\n"
                  "00:00:05,500 --> 00:00:07,250\n"
                  "Bob <dev>: Second & <b>bold</b> -- > here\n"
                  "\n"
                  "4\n"
                  "100:00:00,123 --> 100:00:02,500\n"
                  "long\n"
                  "\n");
}

static void test_vtt(void **state)
{
    (void)state;
    hk_transcript_t t = sample_transcript();
    assert_render(&t, HK_FORMAT_VTT,
                  "WEBVTT\n"
                  "\n"
                  "00:00:01.000 --> 00:00:02.500\n"
                  "<v Alice>Hello\n"
                  "world\n"
                  "\n"
                  "00:00:05.500 --> 00:00:05.501\n"
                  "zero length\n"
                  "\n"
                  "00:00:05.500 --> 00:00:07.250\n"
                  "<v Bob &lt;dev&gt;>Second &amp; &lt;b&gt;bold&lt;/b&gt; --&gt; here\n"
                  "\n"
                  "100:00:00.123 --> 100:00:02.500\n"
                  "long\n"
                  "\n");
}

static void test_json(void **state)
{
    (void)state;
    hk_segment_view_t v[2] = {
        seg("7:1:2", 15.02, 16.5, "Line one\nline \"two\"", NULL),
        seg("7:1:1", 12.34, 15.02, "We should ship Friday.", "Alice"),
    };
    v[0].language = NULL;
    v[0].completed = false;
    v[1].absolute_start_ms = T0;
    v[1].absolute_end_ms = T0 + 2680;
    v[1].updated_at = T0 + 5000;
    hk_transcript_t t = {v, 2};
    json_t *arr = hk_format_json(&t);
    assert_non_null(arr);
    char *s = json_dumps(arr, HK_FORMAT_JSON_FLAGS);
    const char *expect =
        "[{\"segment_id\":\"7:1:1\",\"start\":12.34,\"end\":15.02,"
        "\"text\":\"We should ship Friday.\",\"speaker\":\"Alice\",\"language\":\"en\","
        "\"completed\":true,\"absolute_start_time\":\"2026-11-22T10:15:03.120Z\","
        "\"absolute_end_time\":\"2026-11-22T10:15:05.800Z\","
        "\"updated_at\":\"2026-11-22T10:15:08.120Z\"},"
        "{\"segment_id\":\"7:1:2\",\"start\":15.02,\"end\":16.5,"
        "\"text\":\"Line one\\nline \\\"two\\\"\",\"speaker\":null,\"language\":null,"
        "\"completed\":false,\"absolute_start_time\":null,\"absolute_end_time\":null,"
        "\"updated_at\":null}]";
    assert_string_equal(s, expect);
    free(s);
    json_decref(arr);

    hk_transcript_t empty = {NULL, 0};
    arr = hk_format_json(&empty);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
}

/* JSON keeps every segment (even blank ones) and repairs invalid UTF-8 instead of failing. */
static void test_json_blank_and_invalid_utf8(void **state)
{
    (void)state;
    hk_segment_view_t v[2] = {
        seg("b", 2.0, 3.0, "bad \xff\xc3 byte", "Jos\xe9"),
        seg("a", 1.0, 2.0, "  ", NULL),
    };
    hk_transcript_t t = {v, 2};
    json_t *arr = hk_format_json(&t);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "text")), "  ");
    json_t *b = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(b, "text")),
                        "bad \xef\xbf\xbd\xef\xbf\xbd byte");
    assert_string_equal(json_string_value(json_object_get(b, "speaker")), "Jos\xef\xbf\xbd");
    json_decref(arr);
}

/* JSON times are rounded to the millisecond, as the live updates round them. */
static void test_json_rounds_to_ms(void **state)
{
    (void)state;
    hk_segment_view_t v[1] = {seg("a", 1.23456, 2.0004999, "x", NULL)};
    hk_transcript_t t = {v, 1};
    json_t *arr = hk_format_json(&t);
    char *s = json_dumps(json_object_get(json_array_get(arr, 0), "start"),
                         JSON_ENCODE_ANY | HK_FORMAT_JSON_FLAGS);
    assert_string_equal(s, "1.235");
    free(s);
    s = json_dumps(json_object_get(json_array_get(arr, 0), "end"),
                   JSON_ENCODE_ANY | HK_FORMAT_JSON_FLAGS);
    assert_string_equal(s, "2.0");
    free(s);
    json_decref(arr);
}

static void test_empty_transcript(void **state)
{
    (void)state;
    hk_transcript_t t = {NULL, 0};
    assert_render(&t, HK_FORMAT_VTT, "WEBVTT\n\n");
    assert_render(&t, HK_FORMAT_TXT, NULL);
    assert_render(&t, HK_FORMAT_SRT, NULL);
    hk_buf_t b;
    hk_buf_init(&b, 100);
    assert_int_equal(hk_format_render(&t, HK_FORMAT_JSON, &b), HK_EINVAL);
    hk_buf_dispose(&b);
}

/* Times past any real meeting are capped; NaN, infinite and negative times stay renderable. */
static void test_time_limits(void **state)
{
    (void)state;
    hk_segment_view_t v[4] = {
        seg("a", 1e12, 1e12, "far", NULL),
        seg("b", -5.0, -1.0, "negative", NULL),
        seg("c", NAN, INFINITY, "nan", NULL),
        seg("d", 359999.9994, 359999.9996, "round", NULL),
    };
    hk_transcript_t t = {v, 4};
    assert_render(&t, HK_FORMAT_SRT,
                  "1\n00:00:00,000 --> 00:00:00,001\nnan\n\n"
                  "2\n00:00:00,000 --> 00:00:00,001\nnegative\n\n"
                  "3\n99:59:59,999 --> 100:00:00,000\nround\n\n"
                  "4\n9999:59:59,998 --> 9999:59:59,999\nfar\n\n");
    assert_render(&t, HK_FORMAT_TXT,
                  "[00:00:00] nan\n[00:00:00] negative\n[99:59:59] round\n[9999:59:59] far\n");
    json_t *arr = hk_format_json(&t);
    assert_non_null(arr);
    assert_true(json_real_value(json_object_get(json_array_get(arr, 0), "start")) == 0.0);
    assert_true(json_real_value(json_object_get(json_array_get(arr, 0), "end")) == 0.0);
    json_decref(arr);
    /* finite, but infinite once in milliseconds: JSON still renders (it failed: a 500) */
    hk_segment_view_t huge[1] = {seg("h", 1e306, DBL_MAX, "huge", NULL)};
    hk_transcript_t th = {huge, 1};
    arr = hk_format_json(&th);
    assert_non_null(arr);
    assert_true(json_real_value(json_object_get(json_array_get(arr, 0), "end")) == 0.0);
    json_decref(arr);
}

/* Cue text never contains a blank line, a timing arrow, a control character or invalid UTF-8. */
static void test_text_sanitising(void **state)
{
    (void)state;
    hk_segment_view_t v[1] = {
        seg("a", 1.0, 2.0,
            "\n\n a--->b\x01"
            "c\x7f\xc2\x85"
            "d\r\rnext\xed\xa0\x80 line\n\n",
            "\nDr. <Who> & co\r\n"),
    };
    hk_transcript_t t = {v, 1};
    assert_render(&t, HK_FORMAT_SRT,
                  "1\n00:00:01,000 --> 00:00:02,000\n"
                  "Dr. <Who> & co: a--- >b c d\nnext\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd line\n\n");
    assert_render(&t, HK_FORMAT_VTT,
                  "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n"
                  "<v Dr. &lt;Who&gt; &amp; co>a---&gt;b c d\n"
                  "next\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd line\n\n");
    assert_render(&t, HK_FORMAT_TXT,
                  "[00:00:01] Dr. <Who> & co: a--->b c d next\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                  "line\n");
}

/* A speaker that sanitises to nothing is no speaker; a voice name can never close the tag. */
static void test_speakers(void **state)
{
    (void)state;
    hk_segment_view_t v[3] = {
        seg("a", 1.0, 2.0, "hi", "\r\n\t"), seg("b", 3.0, 4.0, "yo", "a>b"),
        seg("c", 5.0, 6.0, "ok", "Mallory--"), /* "<v Mallory-->" would end the cue */
    };
    hk_transcript_t t = {v, 3};
    assert_render(&t, HK_FORMAT_VTT,
                  "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n\n"
                  "00:00:03.000 --> 00:00:04.000\n<v a&gt;b>yo\n\n"
                  "00:00:05.000 --> 00:00:06.000\n<v Mallory-- >ok\n\n");
    t.n = 2;
    assert_render(&t, HK_FORMAT_SRT,
                  "1\n00:00:01,000 --> 00:00:02,000\nhi\n\n"
                  "2\n00:00:03,000 --> 00:00:04,000\na>b: yo\n\n");
}

static hk_segment_t stored_seg(char *id, double start, char *text)
{
    hk_segment_t g = {
        .segment_id = id, .start = start, .end = start + 1.0, .text = text, .updated_at = T0};
    return g;
}

/* Stored segments are completed; a live one replaces the stored one with its id; absolute times
 * follow the meeting's start. */
static void test_merge(void **state)
{
    (void)state;
    hk_segment_t stored[3] = {stored_seg("m:1:1", 1.0, "one"), stored_seg("m:1:2", 2.0, "two"),
                              stored_seg("m:1:3", 3.0, "three")};
    hk_segment_t live[3] = {stored_seg("m:1:2", 2.0, "two, revised"),
                            stored_seg("m:2:1", 4.0, "four"), stored_seg(NULL, 5.0, "no id")};
    bool completed[3] = {true, false, false};
    hk_segment_view_t *v = NULL;
    size_t n = 0;
    assert_int_equal(hk_transcript_merge(stored, 3, live, completed, 3, T0, &v, &n), 0);
    assert_int_equal(n, 4);
    hk_transcript_t t = {v, n};
    assert_render(&t, HK_FORMAT_TXT,
                  "[00:00:01] one\n[00:00:02] two, revised\n[00:00:03] three\n[00:00:04] four\n");
    json_t *arr = hk_format_json(&t);
    assert_int_equal(json_array_size(arr), 4);
    bool want[4] = {true, true, true, false};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(json_is_true(json_object_get(json_array_get(arr, i), "completed")),
                         want[i]);
    json_t *first = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(first, "absolute_start_time")),
                        "2026-11-22T10:15:04.120Z");
    assert_string_equal(json_string_value(json_object_get(first, "absolute_end_time")),
                        "2026-11-22T10:15:05.120Z");
    json_decref(arr);
    free(v);

    /* Without a start time there are no absolute times; without live flags, live is mutable. */
    assert_int_equal(hk_transcript_merge(stored, 1, live + 1, NULL, 1, 0, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_true(v[0].completed);
    assert_false(v[1].completed);
    assert_int_equal(v[0].absolute_start_ms, 0);
    free(v);

    /* Nothing live (the usual case once a meeting ended). */
    assert_int_equal(hk_transcript_merge(stored, 3, NULL, NULL, 0, T0, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[2].text, "three");
    free(v);

    assert_int_equal(hk_transcript_merge(NULL, 0, NULL, NULL, 0, T0, &v, &n), 0);
    assert_null(v);
    assert_int_equal(n, 0);
}

/* A document over the buffer's cap fails cleanly and leaves the buffer freed. */
static void test_cap(void **state)
{
    (void)state;
    hk_transcript_t t = sample_transcript();
    hk_buf_t b;
    hk_buf_init(&b, 64);
    assert_int_equal(hk_format_render(&t, HK_FORMAT_SRT, &b), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    hk_buf_dispose(&b);
}

/* The input is only read: renderers sort a copy. */
static void test_input_untouched(void **state)
{
    (void)state;
    hk_transcript_t t = sample_transcript();
    hk_buf_t b;
    hk_buf_init(&b, 1 << 20);
    assert_int_equal(hk_format_render(&t, HK_FORMAT_VTT, &b), 0);
    hk_buf_dispose(&b);
    assert_string_equal(t.v[0].segment_id, "m:1:2");
    assert_string_equal(t.v[1].segment_id, "m:1:1");
    assert_string_equal(t.v[4].segment_id, "m:1:5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_names),
        cmocka_unit_test(test_txt),
        cmocka_unit_test(test_srt),
        cmocka_unit_test(test_vtt),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_blank_and_invalid_utf8),
        cmocka_unit_test(test_json_rounds_to_ms),
        cmocka_unit_test(test_empty_transcript),
        cmocka_unit_test(test_time_limits),
        cmocka_unit_test(test_text_sanitising),
        cmocka_unit_test(test_speakers),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_input_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
