/* Media-file decoding: any audio or video file FFmpeg can read (libavformat, libavcodec) becomes a
 * stream of 16 kHz mono int16 chunks (libswresample), delivered through a callback. */
#ifndef HK_AUDIO_DECODE_H
#define HK_AUDIO_DECODE_H

#include "core/common.h"

enum {
    HK_DECODE_CHUNK = 8000, /* samples per delivered chunk (0.5 s at 16 kHz); the last is shorter */
};

/*
 * Error codes of hk_audio_decode_file, beside the err message that names the reason:
 *   UV_ENOENT        the file does not exist                    ("file not found")
 *   UV_E* (errno)    it cannot be read: permission, a directory ("cannot read: …")
 *   HK_EINVAL        empty, or not a media file FFmpeg recognises ("not a media file …")
 *   HK_ENOTFOUND     a media file without an audio stream        ("no audio stream …")
 *   UV_ENOSYS        its audio codec has no decoder in this FFmpeg ("no decoder for …")
 *   HK_ENOMEM        allocation failed
 *   HK_ESTATE        the audio could not be decoded at all (every packet failed)
 * A callback's non-zero return value is passed through unchanged.
 */

/* What was opened. Filled before the first chunk is delivered. */
typedef struct {
    double duration_s; /* the file's duration, 0 when the container does not say */
    unsigned in_rate;  /* the audio stream's sample rate, Hz */
    unsigned in_channels;
    char codec[32];     /* FFmpeg's short codec name, e.g. "mp3" */
    char container[32]; /* FFmpeg's short demuxer name, e.g. "wav" */
} hk_decode_info_t;

/*
 * One chunk of n (1..HK_DECODE_CHUNK) samples of 16 kHz mono int16 audio, valid only during the
 * call. progress: the fraction of the input consumed so far in [0, 1] (from timestamps against the
 * duration, else bytes read against the file size), non-decreasing; -1 when unknown. Return 0 to
 * go on, anything else to stop decoding (hk_audio_decode_file then returns that value).
 */
typedef int (*hk_decode_chunk_cb)(const int16_t *pcm, size_t n, double progress, void *user);

/*
 * Decodes the best audio stream of the file at `path` (a video file's audio track too) from start
 * to end, converting it to 16 kHz mono int16 and delivering it in order through cb, in chunks, on
 * the calling thread: memory stays bounded whatever the file's length. Packets the decoder rejects
 * are skipped (as ffmpeg does) unless nothing at all decodes. info (may be NULL) is filled once the
 * file is open. On failure, err (errlen bytes, may be NULL) receives a one-line reason without the
 * path. Returns 0 when the whole file was delivered, or a code listed above. Blocking (reads the
 * file and decodes): call it from a thread that may block. Any thread; calls may run in parallel.
 */
int hk_audio_decode_file(const char *path, hk_decode_chunk_cb cb, void *user,
                         hk_decode_info_t *info, char *err, size_t errlen);

#endif
