/* test_maildir_lock.c — unit tests for src/store/maildir_lock.c: one holder
 * per Maildir within the process, other Maildirs unaffected, release makes
 * it free again, and another process (fork) sees the lock through
 * data_dir/pobox.locks until it is released. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/maildir_lock.h"

static char data_dir[PATH_MAX];

static int setup(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(data_dir, sizeof data_dir, "%s/pobox-mdlock-XXXXXX", base);
    return mkdtemp(data_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/pobox.locks", data_dir);
    unlink(path);
    return rmdir(data_dir);
}

/* What another process gets when it tries (dev, ino): its exit status. */
static int take_in_child(dev_t dev, ino_t ino)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(maildir_lock_take(data_dir, dev, ino) + 10);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status) - 10;
}

static void test_one_holder_per_maildir(void **state)
{
    assert_int_equal(maildir_lock_take(data_dir, 1, 100), 1);
    assert_int_equal(maildir_lock_take(data_dir, 1, 100), 0);
    assert_int_equal(maildir_lock_take(data_dir, 1, 101), 1);  /* another one */
    assert_int_equal(maildir_lock_take(data_dir, 2, 100), 1);  /* other device */
    maildir_lock_release(1, 100);
    assert_int_equal(maildir_lock_take(data_dir, 1, 100), 1);
    maildir_lock_release(1, 100);
    maildir_lock_release(1, 101);
    maildir_lock_release(2, 100);
    maildir_lock_release(3, 300);                               /* not held: no-op */
}

static void test_other_process_sees_the_lock(void **state)
{
    struct stat st;
    char path[PATH_MAX + 32];

    assert_int_equal(maildir_lock_take(data_dir, 7, 700), 1);
    snprintf(path, sizeof path, "%s/pobox.locks", data_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);            /* locked, never written */
    assert_int_equal(take_in_child(7, 700), 0);
    assert_int_equal(take_in_child(7, 701), 1);
    maildir_lock_release(7, 700);
    assert_int_equal(take_in_child(7, 700), 1);
}

static void test_unusable_data_dir_is_an_error(void **state)
{
    assert_int_equal(maildir_lock_take("/nonexistent/pobox-test", 9, 900), -1);
    assert_int_equal(maildir_lock_take(data_dir, 9, 900), 1);
    maildir_lock_release(9, 900);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_holder_per_maildir),
        cmocka_unit_test(test_other_process_sees_the_lock),
        cmocka_unit_test(test_unusable_data_dir_is_an_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
