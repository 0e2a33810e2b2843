/* `hark bot`: one meeting bot process. Reads its JSON config (protocols.md section 3) from stdin,
 * joins the meeting (platform janus: src/bot/janus.c), streams the room's audio and speaker
 * events to the server's /ws/audio like any client, reports its status there and obeys the
 * server's commands (leave, reconfigure). */
#ifndef HK_BOT_H
#define HK_BOT_H

/* Runs the bot until it has left its meeting. argv holds the arguments after "bot" (none are
 * used; --help prints usage). Returns the process exit status: 0 when the final status reached
 * the server, 1 otherwise, 2 for a bad config. Main thread. */
int hk_bot_main(int argc, char **argv);

#endif
