/* Media-file decoding with libavformat/libavcodec and conversion to 16 kHz mono int16 with
 * libswresample, streamed to a callback in fixed-size chunks. */
#include "audio/decode.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

#include "audio/convert.h"
#include "core/log.h"

typedef struct {
    hk_decode_chunk_cb cb;
    void *user;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVStream *st;
    SwrContext *swr;
    /* The input format swr was set up for: a stream may change it mid-way (rare, but legal). */
    int swr_rate, swr_format;
    AVChannelLayout swr_layout;
    int16_t *conv; /* swr output */
    int conv_cap;
    int16_t chunk[HK_DECODE_CHUNK]; /* output gathered into fixed-size chunks */
    size_t nchunk;
    double duration_s, start_s;
    int64_t file_size;
    double progress;
    uint64_t frames_ok, packets_bad;
    bool stopped; /* the callback asked to stop: its code is returned as is */
} dec_t;

static void set_err(char *err, size_t errlen, const char *fmt, ...) HK_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* FFmpeg logs to stderr by default; src/ writes nothing there but through hk_log. Its messages
 * about damaged packets are expected with real files, so they are debug lines here. */
static void av_log_cb(void *avcl, int level, const char *fmt, va_list vl)
{
    HK_UNUSED(avcl);
    if (level > AV_LOG_WARNING || !hk_log_enabled(HK_LOG_DEBUG))
        return;
    char line[512], q[600];
    vsnprintf(line, sizeof(line), fmt, vl);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    hk_log_debug("decode", "op=ffmpeg level=%d msg=%s", level, hk_log_quote(q, sizeof(q), line));
}

/*
 * FFmpeg is loaded with dlopen() on first use instead of being linked: only `hark transcribe`
 * decodes files, and linking libavformat/libavcodec (with their own dependencies: gnutls,
 * librsvg, ...) would add about 25 MB of shared pages to the RSS of every server and bot process.
 * The headers still give every type; calls go through this table (AV(fn)).
 */
#define HK_AV_FUNCS(X)                                                                             \
    X(avformat, avformat_open_input)                                                               \
    X(avformat, avformat_find_stream_info)                                                         \
    X(avformat, avformat_close_input)                                                              \
    X(avformat, av_find_best_stream)                                                               \
    X(avformat, av_read_frame)                                                                     \
    X(avformat, avio_seek)                                                                         \
    X(avcodec, avcodec_send_packet)                                                                \
    X(avcodec, avcodec_receive_frame)                                                              \
    X(avcodec, avcodec_parameters_to_context)                                                      \
    X(avcodec, avcodec_open2)                                                                      \
    X(avcodec, avcodec_get_name)                                                                   \
    X(avcodec, avcodec_free_context)                                                               \
    X(avcodec, avcodec_alloc_context3)                                                             \
    X(avcodec, av_packet_unref)                                                                    \
    X(avcodec, av_packet_free)                                                                     \
    X(avcodec, av_packet_alloc)                                                                    \
    X(avutil, av_free)                                                                             \
    X(avutil, av_channel_layout_uninit)                                                            \
    X(avutil, av_channel_layout_copy)                                                              \
    X(avutil, av_strerror)                                                                         \
    X(avutil, av_realloc_array)                                                                    \
    X(avutil, av_mallocz)                                                                          \
    X(avutil, av_log_set_callback)                                                                 \
    X(avutil, av_frame_unref)                                                                      \
    X(avutil, av_frame_free)                                                                       \
    X(avutil, av_frame_alloc)                                                                      \
    X(avutil, av_channel_layout_default)                                                           \
    X(avutil, av_channel_layout_compare)                                                           \
    X(swresample, swr_free)                                                                        \
    X(swresample, swr_init)                                                                        \
    X(swresample, swr_get_out_samples)                                                             \
    X(swresample, swr_convert)                                                                     \
    X(swresample, swr_alloc_set_opts2)

#define HK_AV_FIELD(lib, fn) __typeof__(fn) *fn;
static struct {
    HK_AV_FUNCS(HK_AV_FIELD)
} av_fns;
#define AV(fn) (av_fns.fn)

static const char *const av_libs[] = {
    "libavutil.so." HK_STR(LIBAVUTIL_VERSION_MAJOR),
    "libswresample.so." HK_STR(LIBSWRESAMPLE_VERSION_MAJOR),
    "libavcodec.so." HK_STR(LIBAVCODEC_VERSION_MAJOR),
    "libavformat.so." HK_STR(LIBAVFORMAT_VERSION_MAJOR),
};
static void *av_handles[4];
static char av_load_error[256];
static pthread_once_t av_once = PTHREAD_ONCE_INIT;

static void *av_handle(const char *lib)
{
    if (strcmp(lib, "avutil") == 0)
        return av_handles[0];
    if (strcmp(lib, "swresample") == 0)
        return av_handles[1];
    if (strcmp(lib, "avcodec") == 0)
        return av_handles[2];
    return av_handles[3];
}

static void av_load(void)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(av_libs); i++) {
        av_handles[i] = dlopen(av_libs[i], RTLD_NOW | RTLD_LOCAL);
        if (!av_handles[i]) {
            snprintf(av_load_error, sizeof(av_load_error), "cannot load FFmpeg (%s): %s",
                     av_libs[i], dlerror());
            return;
        }
    }
#define HK_AV_LOAD(lib, fn)                                                                        \
    if (!av_load_error[0] && !(*(void **)&av_fns.fn = dlsym(av_handle(#lib), #fn)))                \
        snprintf(av_load_error, sizeof(av_load_error), "FFmpeg lacks %s", #fn);
    HK_AV_FUNCS(HK_AV_LOAD)
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_setup(void)
{
    AV(av_log_set_callback)(av_log_cb);
}

static void av_reason(int averr, char *buf, size_t len)
{
    if (AV(av_strerror)(averr, buf, len) < 0)
        snprintf(buf, len, "error %d", averr);
}

/* Progress from the frame's timestamp against the duration, else from the bytes read. */
static void update_progress(dec_t *d, const AVFrame *fr)
{
    double p = -1;
    int64_t ts = fr ? fr->best_effort_timestamp : AV_NOPTS_VALUE;
    if (d->duration_s > 0 && ts != AV_NOPTS_VALUE) {
        double t = (double)ts * av_q2d(d->st->time_base) - d->start_s;
        t += fr->sample_rate > 0 ? (double)fr->nb_samples / fr->sample_rate : 0;
        p = t / d->duration_s;
    } else if (d->file_size > 0 && d->fmt->pb) {
        int64_t pos = AV(avio_seek)(d->fmt->pb, 0, SEEK_CUR) /* avio_tell is inline */;
        if (pos >= 0)
            p = (double)pos / (double)d->file_size;
    }
    if (p < 0)
        return;
    if (p > 1)
        p = 1;
    if (p > d->progress)
        d->progress = p;
}

static int deliver(dec_t *d, const int16_t *pcm, size_t n)
{
    while (n > 0) {
        size_t k = HK_DECODE_CHUNK - d->nchunk;
        if (k > n)
            k = n;
        memcpy(d->chunk + d->nchunk, pcm, k * sizeof(*pcm));
        d->nchunk += k;
        pcm += k;
        n -= k;
        if (d->nchunk == HK_DECODE_CHUNK) {
            d->nchunk = 0;
            int rc = d->cb(d->chunk, HK_DECODE_CHUNK, d->progress, d->user);
            if (rc) {
                d->stopped = true;
                return rc;
            }
        }
    }
    return 0;
}

/* (Re)creates the resampler for the frame's format, rate and channel layout. */
static int setup_swr(dec_t *d, const AVFrame *fr)
{
    if (d->swr && d->swr_rate == fr->sample_rate && d->swr_format == fr->format &&
        AV(av_channel_layout_compare)(&d->swr_layout, &fr->ch_layout) == 0)
        return 0;
    AV(swr_free)(&d->swr);
    AV(av_channel_layout_uninit)(&d->swr_layout);
    /* Remember the frame's layout as given (it is what later frames are compared with). */
    if (AV(av_channel_layout_copy)(&d->swr_layout, &fr->ch_layout) < 0)
        return HK_ENOMEM;
    AVChannelLayout in;
    if (fr->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || fr->ch_layout.nb_channels <= 0) {
        /* WAV files with many channels and no mask, raw codecs: assume the usual layout. */
        AV(av_channel_layout_default)
        (&in, fr->ch_layout.nb_channels > 0 ? fr->ch_layout.nb_channels : 1);
    } else if (AV(av_channel_layout_copy)(&in, &fr->ch_layout) < 0) {
        return HK_ENOMEM;
    }
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    int rc = AV(swr_alloc_set_opts2)(&d->swr, &mono, AV_SAMPLE_FMT_S16, HK_AUDIO_ASR_RATE, &in,
                                     (enum AVSampleFormat)fr->format, fr->sample_rate, 0, NULL);
    if (rc >= 0)
        rc = AV(swr_init)(d->swr);
    AV(av_channel_layout_uninit)(&in);
    if (rc < 0) {
        AV(swr_free)(&d->swr);
        return HK_ESTATE;
    }
    d->swr_rate = fr->sample_rate;
    d->swr_format = fr->format;
    return 0;
}

/* Converts (fr != NULL) or drains (fr == NULL) through swr and delivers the output. */
static int convert(dec_t *d, const AVFrame *fr)
{
    if (!d->swr)
        return 0;
    int in_n = fr ? fr->nb_samples : 0;
    for (;;) {
        int need = AV(swr_get_out_samples)(d->swr, in_n);
        if (need <= 0)
            return 0;
        if (need > d->conv_cap) {
            int16_t *p = AV(av_realloc_array)(d->conv, (size_t)need, sizeof(*p));
            if (!p)
                return HK_ENOMEM;
            d->conv = p;
            d->conv_cap = need;
        }
        uint8_t *out = (uint8_t *)d->conv;
        int got = AV(swr_convert)(d->swr, &out, d->conv_cap,
                                  fr ? (const uint8_t **)fr->extended_data : NULL, in_n);
        if (got < 0)
            return HK_ESTATE;
        int rc = deliver(d, d->conv, (size_t)got);
        if (rc || fr || got == 0)
            return rc; /* a frame converts in one call; draining repeats until empty */
    }
}

/* Receives every frame the decoder has ready. */
static int drain_decoder(dec_t *d, AVFrame *fr)
{
    for (;;) {
        int r = AV(avcodec_receive_frame)(d->dec, fr);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0) {
            d->packets_bad++;
            return 0;
        }
        d->frames_ok++;
        update_progress(d, fr);
        int rc = setup_swr(d, fr);
        if (rc == 0)
            rc = convert(d, fr);
        AV(av_frame_unref)(fr);
        if (rc)
            return rc;
    }
}

/* Opens the file, classifying what can go wrong before FFmpeg is involved. */
static int check_file(const char *path, int64_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            set_err(err, errlen, "file not found");
        else
            set_err(err, errlen, "cannot read: %s", strerror(e));
        return e == ENOTDIR ? UV_ENOENT : -e;
    }
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0) {
        rc = -errno;
        set_err(err, errlen, "cannot read: %s", strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        rc = UV_EISDIR;
        set_err(err, errlen, "cannot read: is a directory");
    } else if (S_ISREG(sb.st_mode) && sb.st_size == 0) {
        rc = HK_EINVAL;
        set_err(err, errlen, "not a media file (empty file)");
    }
    *size = S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : 0;
    close(fd);
    return rc;
}

static int open_input(dec_t *d, const char *path, hk_decode_info_t *info, char *err, size_t errlen)
{
    char why[128];
    int r = AV(avformat_open_input)(&d->fmt, path, NULL, NULL);
    if (r < 0) {
        if (r == AVERROR(ENOENT)) {
            set_err(err, errlen, "file not found");
            return UV_ENOENT;
        }
        if (r == AVERROR(EACCES) || r == AVERROR(EISDIR) || r == AVERROR(EIO)) {
            av_reason(r, why, sizeof(why));
            set_err(err, errlen, "cannot read: %s", why);
            return r; /* AVERROR(e) is -e: a UV_E* code */
        }
        av_reason(r, why, sizeof(why));
        set_err(err, errlen, "not a media file FFmpeg can read (%s)", why);
        return HK_EINVAL;
    }
    r = AV(avformat_find_stream_info)(d->fmt, NULL);
    if (r < 0) {
        av_reason(r, why, sizeof(why));
        set_err(err, errlen, "not a media file FFmpeg can read (%s)", why);
        return HK_EINVAL;
    }
    const AVCodec *codec = NULL;
    int idx = AV(av_find_best_stream)(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (idx == AVERROR_STREAM_NOT_FOUND) {
        set_err(err, errlen, "no audio stream (a %s file with %u stream%s, none of them audio)",
                d->fmt->iformat->name, d->fmt->nb_streams, d->fmt->nb_streams == 1 ? "" : "s");
        return HK_ENOTFOUND;
    }
    if (idx == AVERROR_DECODER_NOT_FOUND || (idx >= 0 && !codec)) {
        /* Name the codec of the first audio stream: that is the one that has no decoder. */
        const char *name = "unknown";
        for (unsigned i = 0; i < d->fmt->nb_streams; i++)
            if (d->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) {
                name = AV(avcodec_get_name)(d->fmt->streams[i]->codecpar->codec_id);
                break;
            }
        set_err(err, errlen, "no decoder for its audio codec \"%s\" in this FFmpeg build", name);
        return UV_ENOSYS;
    }
    if (idx < 0) {
        av_reason(idx, why, sizeof(why));
        set_err(err, errlen, "not a media file FFmpeg can read (%s)", why);
        return HK_EINVAL;
    }
    d->st = d->fmt->streams[idx];
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != idx)
            d->fmt->streams[i]->discard = AVDISCARD_ALL; /* do not even demux video */
    d->dec = AV(avcodec_alloc_context3)(codec);
    if (!d->dec || AV(avcodec_parameters_to_context)(d->dec, d->st->codecpar) < 0) {
        set_err(err, errlen, "out of memory");
        return HK_ENOMEM;
    }
    d->dec->pkt_timebase = d->st->time_base;
    r = AV(avcodec_open2)(d->dec, codec, NULL);
    if (r < 0) {
        av_reason(r, why, sizeof(why));
        set_err(err, errlen, "cannot open the \"%s\" decoder (%s)", codec->name, why);
        return UV_ENOSYS;
    }

    if (d->fmt->duration > 0 && d->fmt->duration != AV_NOPTS_VALUE)
        d->duration_s = (double)d->fmt->duration / AV_TIME_BASE;
    else if (d->st->duration > 0 && d->st->duration != AV_NOPTS_VALUE)
        d->duration_s = (double)d->st->duration * av_q2d(d->st->time_base);
    if (d->st->start_time != AV_NOPTS_VALUE)
        d->start_s = (double)d->st->start_time * av_q2d(d->st->time_base);
    if (info) {
        info->duration_s = d->duration_s;
        info->in_rate =
            (unsigned)(d->st->codecpar->sample_rate > 0 ? d->st->codecpar->sample_rate : 0);
        info->in_channels = (unsigned)(d->st->codecpar->ch_layout.nb_channels > 0
                                           ? d->st->codecpar->ch_layout.nb_channels
                                           : 0);
        snprintf(info->codec, sizeof(info->codec), "%s", codec->name);
        snprintf(info->container, sizeof(info->container), "%s", d->fmt->iformat->name);
    }
    return 0;
}

static int decode_all(dec_t *d, char *err, size_t errlen)
{
    AVPacket *pkt = AV(av_packet_alloc)();
    AVFrame *fr = AV(av_frame_alloc)();
    int rc = 0;
    if (!pkt || !fr) {
        set_err(err, errlen, "out of memory");
        rc = HK_ENOMEM;
        goto out;
    }
    int r;
    char why[128] = "";
    while ((r = AV(av_read_frame)(d->fmt, pkt)) >= 0) {
        if (pkt->stream_index == d->st->index) {
            /* A damaged packet is skipped, as ffmpeg does; the decoder resynchronises. */
            if (AV(avcodec_send_packet)(d->dec, pkt) < 0)
                d->packets_bad++;
            rc = drain_decoder(d, fr);
        }
        AV(av_packet_unref)(pkt);
        if (rc)
            goto out;
    }
    if (d->progress >= 0)
        d->progress = 1; /* the whole input is read: what follows is the decoders' tail */
    if (r != AVERROR_EOF) {
        /* A read error mid-file (truncated, I/O): what was decoded is kept unless it was none. */
        av_reason(r, why, sizeof(why));
        hk_log_debug("decode", "op=read err=\"%s\"", why);
    }
    AV(avcodec_send_packet)(d->dec, NULL); /* end of stream: the decoder's buffered frames */
    if ((rc = drain_decoder(d, fr)) != 0 || (rc = convert(d, NULL)) != 0)
        goto out;
    if (d->frames_ok == 0) {
        if (r != AVERROR_EOF)
            set_err(err, errlen, "cannot read: %s", why);
        else
            set_err(err, errlen, "no decodable audio (%llu damaged packets)",
                    (unsigned long long)d->packets_bad);
        rc = HK_ESTATE;
        goto out;
    }
    if (d->nchunk > 0) {
        rc = d->cb(d->chunk, d->nchunk, d->progress, d->user);
        d->stopped = rc != 0;
        d->nchunk = 0;
    }
out:
    /* When the callback stopped us, its own code goes back without a message of ours. */
    if (!d->stopped && rc == HK_ENOMEM)
        set_err(err, errlen, "out of memory");
    else if (!d->stopped && rc == HK_ESTATE && err && !err[0])
        set_err(err, errlen, "cannot convert the audio to 16 kHz mono");
    AV(av_packet_free)(&pkt);
    AV(av_frame_free)(&fr);
    return rc;
}

int hk_audio_decode_file(const char *path, hk_decode_chunk_cb cb, void *user,
                         hk_decode_info_t *info, char *err, size_t errlen)
{
    pthread_once(&av_once, av_load);
    if (av_load_error[0]) {
        if (err && errlen)
            snprintf(err, errlen, "%s", av_load_error);
        return UV_ENOSYS;
    }
    pthread_once(&log_once, log_setup);
    if (err && errlen)
        err[0] = '\0';
    if (info)
        memset(info, 0, sizeof(*info));
    dec_t *d = AV(av_mallocz)(sizeof(*d));
    if (!d) {
        set_err(err, errlen, "out of memory");
        return HK_ENOMEM;
    }
    d->cb = cb;
    d->user = user;
    d->progress = -1;
    int rc = check_file(path, &d->file_size, err, errlen);
    if (rc == 0)
        rc = open_input(d, path, info, err, errlen);
    if (rc == 0)
        rc = decode_all(d, err, errlen);
    AV(swr_free)(&d->swr);
    AV(av_channel_layout_uninit)(&d->swr_layout);
    AV(av_free)(d->conv);
    AV(avcodec_free_context)(&d->dec);
    AV(avformat_close_input)(&d->fmt);
    AV(av_free)(d);
    return rc;
}
