/* Unit tests for src/core/config: defaults, then HARK_* variables, then flags, and validation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/config.h"

/* Removes every HARK_* variable so that the caller's environment cannot change a result. Runs
 * before and after each test, so a failed assertion never leaks a variable into the next one. */
static int clear_env(void **state)
{
    (void)state;
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "HARK_", 5) == 0) {
                const char *eq = strchr(*e, '=');
                size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
                if (n < sizeof(name)) {
                    memcpy(name, *e, n);
                    name[n] = '\0';
                }
                break;
            }
        }
        if (!name[0])
            return 0;
        if (unsetenv(name) != 0)
            return -1;
    }
}

/* Loads with the given flags and expects failure; returns the error text in err. */
static void expect_fail(int argc, char **argv, char *err, size_t errlen)
{
    hk_config_t cfg;
    err[0] = '\0';
    assert_int_equal(hk_config_load(&cfg, argc, argv, err, errlen), HK_EINVAL);
    assert_true(err[0] != '\0');
    /* The loader disposed what it had built; disposing again must be harmless. */
    assert_null(cfg.bind);
    assert_null(cfg.data_dir);
    hk_config_dispose(&cfg);
}

static void load_ok(hk_config_t *cfg, int argc, char **argv)
{
    char err[256] = "";
    int rc = hk_config_load(cfg, argc, argv, err, sizeof(err));
    if (rc != 0)
        print_error("load failed: %s\n", err);
    assert_int_equal(rc, 0);
}

static void test_defaults(void **state)
{
    (void)state;
    hk_config_t cfg;
    load_ok(&cfg, 0, NULL);
    assert_int_equal(cfg.port, 8056);
    assert_string_equal(cfg.bind, "127.0.0.1");
    assert_string_equal(cfg.data_dir, "./data");
    assert_string_equal(cfg.admin_token, "");
    assert_string_equal(cfg.log_level, "info");
    assert_true(cfg.access_log);
    assert_int_equal(cfg.max_header_bytes, 16384);
    assert_int_equal(cfg.max_body_bytes, 1048576);
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.idle_timeout_ms, 60000);
    assert_int_equal(cfg.shutdown_timeout_ms, 4000);
    assert_string_equal(cfg.public_url, "");
    assert_int_equal(cfg.default_max_concurrent_bots, 3);
    assert_int_equal(cfg.max_meeting_duration_s, 14400);
    assert_string_equal(cfg.token_secret, "");
    hk_config_dispose(&cfg);
    assert_null(cfg.bind);
    assert_null(cfg.data_dir);
}

static void test_env_overrides_default(void **state)
{
    (void)state;
    assert_int_equal(setenv("HARK_PORT", "9000", 1), 0);
    assert_int_equal(setenv("HARK_DATA_DIR", "/tmp/hark-env", 1), 0);
    assert_int_equal(setenv("HARK_ACCESS_LOG", "off", 1), 0);
    assert_int_equal(setenv("HARK_MAX_BODY_BYTES", "2048", 1), 0);
    hk_config_t cfg;
    load_ok(&cfg, 0, NULL);
    assert_int_equal(cfg.port, 9000);
    assert_string_equal(cfg.data_dir, "/tmp/hark-env");
    assert_false(cfg.access_log);
    assert_int_equal(cfg.max_body_bytes, 2048);
    assert_string_equal(cfg.bind, "127.0.0.1"); /* untouched settings keep their default */
    hk_config_dispose(&cfg);
    unsetenv("HARK_PORT");
    unsetenv("HARK_DATA_DIR");
    unsetenv("HARK_ACCESS_LOG");
    unsetenv("HARK_MAX_BODY_BYTES");

    load_ok(&cfg, 0, NULL);
    assert_int_equal(cfg.port, 8056);
    hk_config_dispose(&cfg);
}

static void test_flag_overrides_env(void **state)
{
    (void)state;
    assert_int_equal(setenv("HARK_PORT", "9000", 1), 0);
    assert_int_equal(setenv("HARK_BIND", "0.0.0.0", 1), 0);
    char *argv[] = {"--port", "9100"};
    hk_config_t cfg;
    load_ok(&cfg, 2, argv);
    assert_int_equal(cfg.port, 9100);
    assert_string_equal(cfg.bind, "0.0.0.0"); /* env still applies where no flag is given */
    hk_config_dispose(&cfg);
    unsetenv("HARK_PORT");
    unsetenv("HARK_BIND");
}

static void test_name_equals_value_form(void **state)
{
    (void)state;
    char *argv[] = {
        "--port=9200", "--data-dir=/tmp/x=y", "--max-header-bytes=2048", "--admin-token=", "--bind",
        "::1"};
    hk_config_t cfg;
    load_ok(&cfg, 6, argv);
    assert_int_equal(cfg.port, 9200);
    assert_string_equal(cfg.data_dir, "/tmp/x=y"); /* only the first '=' splits */
    assert_int_equal(cfg.max_header_bytes, 2048);
    assert_string_equal(cfg.admin_token, "");
    assert_string_equal(cfg.bind, "::1");
    hk_config_dispose(&cfg);
}

static void test_last_flag_wins(void **state)
{
    (void)state;
    char *argv[] = {"--port", "1", "--port=2", "--bind", "a", "--bind", "b"};
    hk_config_t cfg;
    load_ok(&cfg, 7, argv);
    assert_int_equal(cfg.port, 2);
    assert_string_equal(cfg.bind, "b");
    hk_config_dispose(&cfg);
}

static void test_bool_flags(void **state)
{
    (void)state;
    assert_int_equal(setenv("HARK_ACCESS_LOG", "false", 1), 0);
    hk_config_t cfg;

    char *alone[] = {"--access-log"}; /* last argument, no value */
    load_ok(&cfg, 1, alone);
    assert_true(cfg.access_log);
    hk_config_dispose(&cfg);

    char *before_flag[] = {"--access-log", "--port", "1234"};
    load_ok(&cfg, 3, before_flag);
    assert_true(cfg.access_log);
    assert_int_equal(cfg.port, 1234); /* the next flag was not eaten as the value */
    hk_config_dispose(&cfg);

    unsetenv("HARK_ACCESS_LOG");

    char *with_value[] = {"--access-log", "false"};
    load_ok(&cfg, 2, with_value);
    assert_false(cfg.access_log);
    hk_config_dispose(&cfg);

    char *eq_off[] = {"--access-log=off"};
    load_ok(&cfg, 1, eq_off);
    assert_false(cfg.access_log);
    hk_config_dispose(&cfg);

    char *eq_yes[] = {"--access-log=NO", "--access-log=Yes"};
    load_ok(&cfg, 2, eq_yes);
    assert_true(cfg.access_log);
    hk_config_dispose(&cfg);

    char err[256];
    char *bad[] = {"--access-log=maybe"};
    expect_fail(1, bad, err, sizeof(err));
    assert_non_null(strstr(err, "access_log"));
    assert_non_null(strstr(err, "maybe"));
}

static void test_unknown_flag(void **state)
{
    (void)state;
    char err[256];
    char *a[] = {"--nope"};
    expect_fail(1, a, err, sizeof(err));
    assert_non_null(strstr(err, "\"--nope\""));

    char *b[] = {"--port", "1", "--nope=3"};
    expect_fail(3, b, err, sizeof(err));
    assert_non_null(strstr(err, "\"--nope\""));

    char *c[] = {"serve"}; /* not a flag at all */
    expect_fail(1, c, err, sizeof(err));
    assert_non_null(strstr(err, "serve"));

    char *d[] = {"--data_dir", "/x"}; /* flags use dashes */
    expect_fail(2, d, err, sizeof(err));
    assert_non_null(strstr(err, "--data_dir"));

    char *e[] = {"-port", "1"};
    expect_fail(2, e, err, sizeof(err));
    assert_non_null(strstr(err, "-port"));
}

static void test_bad_numbers(void **state)
{
    (void)state;
    char err[256];
    const char *bad_ports[] = {"70000", "abc", "12x", "-1", "", "99999999999999999999", "1.5"};
    for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
        char *argv[] = {"--port", (char *)bad_ports[i]};
        expect_fail(2, argv, err, sizeof(err));
        assert_non_null(strstr(err, "port"));
        assert_non_null(strstr(err, "65535"));
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "\"%s\"", bad_ports[i]);
        assert_non_null(strstr(err, quoted));
    }

    char *workers[] = {"--workers=257"};
    expect_fail(1, workers, err, sizeof(err));
    assert_non_null(strstr(err, "workers"));

    char *body[] = {"--max-body-bytes", "63"};
    expect_fail(2, body, err, sizeof(err));
    assert_non_null(strstr(err, "max_body_bytes"));

    /* Bounds are inclusive. */
    hk_config_t cfg;
    char *edges[] = {"--port", "65535", "--max-body-bytes", "64"};
    load_ok(&cfg, 4, edges);
    assert_int_equal(cfg.port, 65535);
    assert_int_equal(cfg.max_body_bytes, 64);
    hk_config_dispose(&cfg);
    char *zero[] = {"--port=0"};
    load_ok(&cfg, 1, zero);
    assert_int_equal(cfg.port, 0);
    hk_config_dispose(&cfg);
}

static void test_bad_env_value_names_variable(void **state)
{
    (void)state;
    assert_int_equal(setenv("HARK_PORT", "12x", 1), 0);
    char err[256];
    expect_fail(0, NULL, err, sizeof(err));
    assert_non_null(strstr(err, "HARK_PORT"));
    assert_non_null(strstr(err, "port"));
    unsetenv("HARK_PORT");
}

static void test_missing_value(void **state)
{
    (void)state;
    char err[256];
    char *argv[] = {"--port"};
    expect_fail(1, argv, err, sizeof(err));
    assert_non_null(strstr(err, "--port"));
    assert_non_null(strstr(err, "needs a value"));

    char *s[] = {"--bind", "x", "--data-dir"};
    expect_fail(3, s, err, sizeof(err));
    assert_non_null(strstr(err, "--data-dir"));
}

static void test_workers_resolved(void **state)
{
    (void)state;
    hk_config_t cfg;
    char *zero[] = {"--workers", "0"};
    load_ok(&cfg, 2, zero);
    assert_in_range(cfg.workers, 1, 256);
    hk_config_dispose(&cfg);

    char *three[] = {"--workers", "3"};
    load_ok(&cfg, 2, three);
    assert_int_equal(cfg.workers, 3);
    hk_config_dispose(&cfg);
}

static void test_print_hides_secrets(void **state)
{
    (void)state;
    hk_config_t cfg;
    char *argv[] = {"--admin-token", "s3cret-admin", "--port", "9001"};
    load_ok(&cfg, 4, argv);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    hk_config_print(&cfg, f);
    fclose(f);
    assert_non_null(strstr(text, "port = 9001\n"));
    assert_non_null(strstr(text, "bind = 127.0.0.1\n"));
    assert_non_null(strstr(text, "access_log = true\n"));
    assert_non_null(strstr(text, "max_body_bytes = 1048576\n"));
    assert_non_null(strstr(text, "admin_token = (set)\n"));
    assert_non_null(strstr(text, "token_secret = (unset)\n"));
    assert_null(strstr(text, "s3cret-admin"));
    free(text);
    hk_config_dispose(&cfg);
}

static void test_help(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    hk_config_help(f);
    fclose(f);
    assert_non_null(strstr(text, "--port"));
    assert_non_null(strstr(text, "HARK_PORT"));
    assert_non_null(strstr(text, "8056"));
    assert_non_null(strstr(text, "--max-body-bytes"));
    assert_non_null(strstr(text, "HARK_MAX_BODY_BYTES"));
    assert_non_null(strstr(text, "--data-dir"));
    assert_non_null(strstr(text, "HARK_TOKEN_SECRET"));
    free(text);
}

static void test_log_level(void **state)
{
    (void)state;
    char err[256];
    char *bad[] = {"--log-level", "loud"};
    expect_fail(2, bad, err, sizeof(err));
    assert_non_null(strstr(err, "log_level"));

    hk_config_t cfg;
    char *upper[] = {"--log-level", "DEBUG"};
    load_ok(&cfg, 2, upper);
    assert_string_equal(cfg.log_level, "DEBUG");
    hk_config_dispose(&cfg);
    char *off[] = {"--log-level=off"};
    load_ok(&cfg, 1, off);
    hk_config_dispose(&cfg);
}

static void test_public_url(void **state)
{
    (void)state;
    char err[256];
    char *bad[] = {"--public-url", "ftp://example.com"};
    expect_fail(2, bad, err, sizeof(err));
    assert_non_null(strstr(err, "public_url"));
    char *bare[] = {"--public-url", "example.com"};
    expect_fail(2, bare, err, sizeof(err));
    assert_non_null(strstr(err, "public_url"));

    hk_config_t cfg;
    char *ok[] = {"--public-url", "https://hark.example.com/base"};
    load_ok(&cfg, 2, ok);
    assert_string_equal(cfg.public_url, "https://hark.example.com/base");
    hk_config_dispose(&cfg);
    char *plain[] = {"--public-url=http://127.0.0.1:1"};
    load_ok(&cfg, 1, plain);
    hk_config_dispose(&cfg);
}

static void test_empty_required_strings(void **state)
{
    (void)state;
    char err[256];
    char *dir[] = {"--data-dir="};
    expect_fail(1, dir, err, sizeof(err));
    assert_non_null(strstr(err, "data_dir"));
    char *bind[] = {"--bind="};
    expect_fail(1, bind, err, sizeof(err));
    assert_non_null(strstr(err, "bind"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_env_overrides_default),
        T(test_flag_overrides_env),
        T(test_name_equals_value_form),
        T(test_last_flag_wins),
        T(test_bool_flags),
        T(test_unknown_flag),
        T(test_bad_numbers),
        T(test_bad_env_value_names_variable),
        T(test_missing_value),
        T(test_workers_resolved),
        T(test_print_hides_secrets),
        T(test_help),
        T(test_log_level),
        T(test_public_url),
        T(test_empty_required_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
