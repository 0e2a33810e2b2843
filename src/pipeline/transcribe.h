/* `hark transcribe`: media files → the server's recogniser and collector → a transcript file. */
#ifndef HK_TRANSCRIBE_H
#define HK_TRANSCRIBE_H

/*
 * Runs the transcribe command. argv holds the arguments after the word "transcribe" (argc of
 * them): `FILE... [--format json|txt|srt|vtt] [-o|--output OUT] [--asr-pool-size N]`. Each file is
 * decoded (audio/decode.h), fed to one hk_asr session with backpressure, collected by an
 * hk_collector without a store, and rendered by pipeline/formats.h. One FILE: written to OUT, or
 * stdout when -o is absent or "-", or OUT/<name>.<ext> when OUT is a directory. Several FILEs: -o
 * DIR is required (created when missing); each goes to DIR/<name>.<ext>. A progress bar is drawn
 * on stderr only when stderr is a terminal; otherwise stderr carries nothing but errors, one line
 * per failed file: `hark transcribe: FILE: reason`. Returns the exit status: 0 when every file
 * was transcribed, 1 when some failed (the others are still written), 2 for a usage error.
 * Main thread; it runs its own event loop and blocks until done.
 */
int hk_transcribe_main(int argc, char **argv);

#endif
