/* `hark transcribe`: decodes media files and runs them through the server's recogniser and
 * collector on a private event loop, then renders each transcript with the server's formatter. */
#include "pipeline/transcribe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "asr/engine.h"
#include "audio/convert.h"
#include "audio/decode.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "pipeline/collector.h"
#include "pipeline/formats.h"

enum {
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    TICK_MS = 20,            /* loop wake-up while waiting for the recogniser's queue to drain */
    DRAW_MS = 100,           /* progress bar redraw interval */
    MAX_SEGMENTS = 10000000, /* per file: the collector keeps the whole transcript */
};

/* One run of the command. Everything belongs to the main thread, which runs `loop`. */
typedef struct {
    hk_format_t format;
    const char *out;    /* -o value, NULL = stdout */
    bool out_dir;       /* out names a directory */
    unsigned pool_size; /* --asr-pool-size */
    bool tty;           /* stderr is a terminal: draw the progress bar */

    uv_loop_t loop;
    uv_timer_t tick;
    hk_asr_engine_t *asr;

    /* The file being transcribed. */
    const char *path;
    hk_collector_t *col;
    hk_live_t *live;
    hk_asr_session_t *sess;
    bool done;       /* done_cb ran */
    int done_status; /* its status */
    hk_decode_info_t info;
    double progress;           /* decoder's fraction of the input read, -1 unknown */
    uint64_t fed;              /* samples fed to the session */
    uint64_t decoded_base;     /* engine's decoded_samples when the file started */
    uint64_t t_start, t_drawn; /* monotonic ns */
    bool drawn;
} tx_t;

static const int64_t MEETING_ID = 1, SESSION_ID = 1;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hark transcribe FILE... [--format json|txt|srt|vtt] [-o OUT] "
            "[--asr-pool-size N]\n\n"
            "Transcribes audio or video files (anything FFmpeg reads) with the server's "
            "recogniser.\n\n"
            "  --format F          json, txt (default), srt or vtt\n"
            "  -o, --output OUT    one FILE: output file (default stdout; \"-\" = stdout; a "
            "directory\n"
            "                      gets OUT/NAME.EXT); several FILEs: a directory (created if "
            "missing)\n"
            "                      that receives one NAME.EXT per file\n"
            "  --asr-pool-size N   recogniser decoders to load (default 1; files are transcribed "
            "one\n"
            "                      after another, and one file uses one decoder at a time)\n\n"
            "A progress bar is shown on stderr when it is a terminal. Exit status: 0 all files "
            "done,\n1 some file failed (\"hark transcribe: FILE: reason\"), 2 usage error.\n");
}

/* ---- progress bar ---- */

static void fmt_duration(char *out, size_t cap, double s)
{
    if (s < 0)
        s = 0;
    long t = (long)s;
    if (t >= 3600)
        snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

/* Audio the recogniser has decoded for this file, in samples. */
static uint64_t processed_samples(tx_t *t)
{
    hk_asr_stats_t st;
    hk_asr_engine_stats(t->asr, &st);
    return st.decoded_samples > t->decoded_base ? st.decoded_samples - t->decoded_base : 0;
}

static void draw(tx_t *t, bool force)
{
    if (!t->tty)
        return;
    uint64_t now = hk_time_mono_ns();
    if (!force && t->drawn && now - t->t_drawn < (uint64_t)DRAW_MS * 1000000)
        return;
    t->t_drawn = now;
    t->drawn = true;
    double done_s = (double)processed_samples(t) / HK_AUDIO_ASR_RATE;
    double total_s = t->info.duration_s;
    if (total_s <= 0 && t->progress > 0)
        total_s = (double)t->fed / HK_AUDIO_ASR_RATE / t->progress; /* from bytes read */
    double elapsed = (double)(now - t->t_start) / 1e9;
    double frac = total_s > 0 ? done_s / total_s : 0;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[30] = '\0';
    char el[32], au[32];
    fmt_duration(el, sizeof(el), elapsed);
    fmt_duration(au, sizeof(au), done_s);
    const char *name = strrchr(t->path, '/') ? strrchr(t->path, '/') + 1 : t->path;
    fprintf(stderr, "\r\033[K%-20.20s [%s] %3d%%  %s audio in %s  %.1fx real time", name, bar,
            (int)(frac * 100), au, el, elapsed > 0 ? done_s / elapsed : 0.0);
    fflush(stderr);
}

static void tick_cb(uv_timer_t *h)
{
    draw(h->data, false);
}

/* ---- recogniser → collector (as the server's ingest does) ---- */

static void result_cb(hk_asr_session_t *s, const hk_asr_result_t *r, void *user)
{
    HK_UNUSED(s);
    tx_t *t = user;
    hk_seg_update_t u = {
        .session_id = SESSION_ID,
        .seq = (uint32_t)r->seq,
        .start = r->start_s,
        .end = r->end_s > r->start_s ? r->end_s : r->start_s,
        .text = r->text ? r->text : "",
        .completed = r->kind == HK_ASR_FINAL,
    };
    hk_collector_put(t->live, &u, 1);
}

static void done_cb(hk_asr_session_t *s, int status, void *user)
{
    tx_t *t = user;
    t->done = true;
    t->done_status = status;
    hk_asr_session_free(s);
    t->sess = NULL;
}

/* Decoder callback: feeds a chunk, waiting (running the loop) while the session's queue is full,
 * so a file of any length is fed at the recogniser's pace without dropping audio. */
static int chunk_cb(const int16_t *pcm, size_t n, double progress, void *user)
{
    tx_t *t = user;
    t->progress = progress;
    for (;;) {
        int rc = hk_asr_session_feed(t->sess, pcm, n);
        if (rc == 0)
            break;
        if (rc != HK_ETOOBIG && rc != HK_ELIMIT)
            return rc;
        uv_run(&t->loop, UV_RUN_ONCE); /* the tick timer bounds the wait */
    }
    t->fed += n;
    uv_run(&t->loop, UV_RUN_NOWAIT); /* results ready so far go to the collector */
    draw(t, false);
    return 0;
}

/* ---- output ---- */

/* Renders the file's transcript (every non-empty segment) into *out. */
static int render(tx_t *t, hk_buf_t *out)
{
    hk_segment_t *segs = NULL;
    bool *completed = NULL;
    size_t n = 0;
    int rc = hk_collector_snapshot(t->col, MEETING_ID, &segs, &completed, &n);
    if (rc)
        return rc;
    /* A FINAL whose words turned out to be noise has empty text: drop it, as the formats do. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (segs[i].text && segs[i].text[0]) {
            hk_segment_t tmp = segs[k];
            segs[k] = segs[i];
            segs[i] = tmp;
            completed[k++] = completed[i];
        }
    }
    hk_segment_view_t *views = NULL;
    size_t nv = 0;
    /* t0 = 0: a file has no wall-clock time, so absolute times are null. */
    rc = hk_transcript_merge(NULL, 0, segs, completed, k, 0, &views, &nv);
    hk_transcript_t tr = {views, nv};
    if (rc == 0 && t->format == HK_FORMAT_JSON) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(t->path));
        json_object_set_new(o, "duration", json_real(t->info.duration_s));
        json_t *arr = hk_format_json(&tr);
        char *s = NULL;
        if (o && arr && json_object_set_new(o, "segments", arr) == 0)
            s = json_dumps(o, HK_FORMAT_JSON_FLAGS);
        else
            json_decref(arr);
        json_decref(o);
        rc = s ? hk_buf_puts(out, s) : HK_ENOMEM;
        if (rc == 0)
            rc = hk_buf_puts(out, "\n");
        free(s);
    } else if (rc == 0) {
        rc = hk_format_render(&tr, t->format, out);
    }
    free(views);
    hk_store_free_segments(segs, n);
    free(completed);
    return rc;
}

/* Writes len bytes to path through a temporary file renamed into place, or to stdout. */
static int write_output(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    if (!path) {
        if ((len && fwrite(data, 1, len, stdout) != len) || fflush(stdout) != 0) {
            snprintf(err, errlen, "cannot write to stdout: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.part", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot create %.300s: %s", tmp, strerror(errno));
        return -1;
    }
    bool ok = (len == 0 || fwrite(data, 1, len, f) == len);
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %.300s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The output path of input i: NULL for stdout. Base names already used get "-2", "-3"... */
static char *output_path(tx_t *t, const char *in, char **used, size_t nused)
{
    if (!t->out || (!t->out_dir && strcmp(t->out, "-") == 0))
        return NULL;
    if (!t->out_dir)
        return strdup(t->out);
    const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
    size_t blen = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        blen = (size_t)(dot - base);
    char path[4200];
    for (int k = 1;; k++) {
        char suffix[16] = "";
        if (k > 1)
            snprintf(suffix, sizeof(suffix), "-%d", k);
        snprintf(path, sizeof(path), "%s/%.*s%s.%s", t->out, (int)blen, base, suffix,
                 hk_format_extension(t->format));
        bool taken = false;
        for (size_t i = 0; i < nused && !taken; i++)
            taken = used[i] && strcmp(used[i], path) == 0;
        if (!taken)
            return strdup(path);
    }
}

/* ---- one file ---- */

static int transcribe_file(tx_t *t, const char *path, char *err, size_t errlen)
{
    t->path = path;
    t->done = false;
    t->done_status = 0;
    t->progress = -1;
    t->fed = 0;
    t->drawn = false;
    t->t_start = hk_time_mono_ns();
    hk_asr_stats_t st;
    hk_asr_engine_stats(t->asr, &st);
    t->decoded_base = st.decoded_samples;

    hk_collector_config_t cc = {.flush_interval_ms = 1000, .max_live_segments = MAX_SEGMENTS};
    t->col = hk_collector_new(&t->loop, NULL, NULL, &cc);
    hk_meeting_t m = {.id = MEETING_ID, .platform = "file", .native_meeting_id = (char *)path};
    static const hk_asr_callbacks_t cb = {result_cb, done_cb};
    int rc = t->col ? hk_collector_attach(t->col, &m, &t->live) : HK_ENOMEM;
    if (rc == 0)
        rc = hk_asr_session_new(t->asr, &cb, t, &t->sess);
    if (rc) {
        snprintf(err, errlen, "cannot start the recogniser session: %s", hk_strerror(rc));
        goto out;
    }
    uv_timer_start(&t->tick, tick_cb, TICK_MS, TICK_MS);
    rc = hk_audio_decode_file(path, chunk_cb, t, &t->info, err, errlen);
    if (rc && !err[0])
        snprintf(err, errlen, "cannot feed the recogniser: %s", hk_strerror(rc));
    if (rc == 0 && (rc = hk_asr_session_finish(t->sess)) == 0) {
        while (!t->done)
            uv_run(&t->loop, UV_RUN_ONCE);
        rc = t->done_status;
        if (rc)
            snprintf(err, errlen, "recognition failed: %s", hk_strerror(rc));
    }
    uv_timer_stop(&t->tick);
    if (rc == 0) {
        hk_collector_complete_session(t->live, SESSION_ID);
        draw(t, true);
    }
out:
    hk_asr_session_free(t->sess); /* after a failure: drops what is queued */
    t->sess = NULL;
    return rc;
}

/* Releases the file's collector (after rendering) and lets its handles close. */
static void end_file(tx_t *t)
{
    hk_collector_release(t->live);
    t->live = NULL;
    hk_collector_free(t->col);
    t->col = NULL;
    uv_run(&t->loop, UV_RUN_NOWAIT);
    if (t->tty && t->drawn)
        fputs("\r\033[K", stderr);
}

/* ---- command line ---- */

static int parse_args(tx_t *t, int argc, char **argv, const char ***files, size_t *nfiles)
{
    *files = calloc((size_t)argc + 1, sizeof(**files));
    *nfiles = 0;
    if (!*files)
        return EXIT_FAILED;
    bool opts = true;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (!opts || a[0] != '-' || strcmp(a, "-") == 0) {
            (*files)[(*nfiles)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts = false;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        const char *name = a;
        char flag[32];
        const char *eq = strchr(a, '=');
        if (eq && strncmp(a, "--", 2) == 0 && (size_t)(eq - a) < sizeof(flag)) {
            snprintf(flag, sizeof(flag), "%.*s", (int)(eq - a), a);
            name = flag;
            val = eq + 1;
        }
        bool known = strcmp(name, "--format") == 0 || strcmp(name, "-o") == 0 ||
                     strcmp(name, "--output") == 0 || strcmp(name, "--asr-pool-size") == 0;
        if (!known) {
            fprintf(stderr, "hark transcribe: unknown option \"%s\"\n", a);
            return EXIT_USAGE;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "hark transcribe: %s needs a value\n", name);
                return EXIT_USAGE;
            }
            val = argv[++i];
        }
        if (strcmp(name, "--format") == 0) {
            if (hk_format_parse(val, &t->format)) {
                fprintf(stderr,
                        "hark transcribe: --format must be json, txt, srt or vtt (got "
                        "\"%s\")\n",
                        val);
                return EXIT_USAGE;
            }
        } else if (strcmp(name, "--asr-pool-size") == 0) {
            char *end;
            errno = 0;
            long v = strtol(val, &end, 10);
            if (errno || end == val || *end || v < 1 || v > 64) {
                fprintf(stderr, "hark transcribe: --asr-pool-size must be 1 to 64 (got \"%s\")\n",
                        val);
                return EXIT_USAGE;
            }
            t->pool_size = (unsigned)v;
        } else {
            t->out = val;
        }
    }
    if (*nfiles == 0) {
        fprintf(stderr, "hark transcribe: no input file\n\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    return 0;
}

/* Decides whether -o names a directory (creating it for several files). */
static int check_output(tx_t *t, size_t nfiles)
{
    struct stat sb;
    bool is_dir =
        t->out && strcmp(t->out, "-") != 0 && stat(t->out, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (nfiles == 1) {
        t->out_dir = is_dir;
        return 0;
    }
    if (!t->out || strcmp(t->out, "-") == 0) {
        fprintf(stderr, "hark transcribe: several files need -o DIR (one output file each)\n");
        return EXIT_USAGE;
    }
    if (!is_dir && mkdir(t->out, 0777) != 0) {
        fprintf(stderr, "hark transcribe: cannot create the output directory %s: %s\n", t->out,
                strerror(errno));
        return EXIT_USAGE;
    }
    t->out_dir = true;
    return 0;
}

int hk_transcribe_main(int argc, char **argv)
{
    tx_t *t = calloc(1, sizeof(*t));
    const char **files = NULL;
    size_t nfiles = 0;
    char **used = NULL;
    if (!t)
        return EXIT_FAILED;
    t->format = HK_FORMAT_TXT;
    t->pool_size = 1;
    int status = parse_args(t, argc, argv, &files, &nfiles);
    if (status < 0) {
        status = 0; /* --help */
        goto out_args;
    }
    if (status || (status = check_output(t, nfiles)) != 0)
        goto out_args;
    t->tty = isatty(STDERR_FILENO) == 1;
    hk_log_init(HK_LOG_ERROR, stderr); /* on stderr: errors only */

    if (uv_loop_init(&t->loop) != 0) {
        status = EXIT_FAILED;
        goto out_args;
    }
    uv_timer_init(&t->loop, &t->tick);
    t->tick.data = t;
    hk_asr_config_t ac = {
        .pool_size = t->pool_size,
        /* Partials only ever replace each other here: compute them rarely. */
        .partial_interval_ms = 2000,
    };
    int rc = hk_asr_engine_new(&t->loop, &ac, &t->asr);
    if (rc) {
        fprintf(stderr,
                "hark transcribe: cannot start the recogniser: %s (is pocketsphinx-en-us "
                "installed?)\n",
                hk_strerror(rc));
        status = EXIT_FAILED;
        goto out_loop;
    }

    used = calloc(nfiles, sizeof(*used));
    if (!used) {
        status = EXIT_FAILED;
        goto out_loop;
    }
    for (size_t i = 0; i < nfiles; i++) {
        char err[512] = "";
        used[i] = output_path(t, files[i], used, i);
        rc = transcribe_file(t, files[i], err, sizeof(err));
        hk_buf_t b;
        hk_buf_init(&b, (size_t)1 << 30);
        if (rc == 0 && (rc = render(t, &b)) != 0)
            snprintf(err, sizeof(err), "cannot render the transcript: %s", hk_strerror(rc));
        double audio_s = (double)processed_samples(t) / HK_AUDIO_ASR_RATE;
        double wall_s = (double)(hk_time_mono_ns() - t->t_start) / 1e9;
        end_file(t);
        if (rc == 0 && write_output(used[i], b.data ? b.data : "", b.len, err, sizeof(err)))
            rc = -1;
        hk_buf_dispose(&b);
        if (rc) {
            fprintf(stderr, "hark transcribe: %s: %s\n", files[i], err);
            status = EXIT_FAILED;
        } else if (t->tty) {
            char au[32], el[32];
            fmt_duration(au, sizeof(au), audio_s);
            fmt_duration(el, sizeof(el), wall_s);
            fprintf(stderr, "%s: %s of audio in %s (%.1fx real time)%s%s\n", files[i], au, el,
                    wall_s > 0 ? audio_s / wall_s : 0.0, used[i] ? " → " : "",
                    used[i] ? used[i] : "");
        }
    }

out_loop:
    hk_asr_engine_free(t->asr);
    uv_close((uv_handle_t *)&t->tick, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT); /* close callbacks */
    uv_loop_close(&t->loop);
out_args:
    for (size_t i = 0; used && i < nfiles; i++)
        free(used[i]);
    free(used);
    free(files);
    free(t);
    return status;
}
