/* test_dirlock.c -- one process per directory (dirlock.h): a second taker,
 * in this process or another, is refused naming the holder's pid; the lock
 * goes with its holder, also when the holder is killed. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dirlock.h"
#include "tmpdir.h"

Test(dirlock, second_taker_is_refused_naming_the_holder)
{
    char dir[256], err[256], want[64];
    tu_tmpdir_make(dir, sizeof(dir), "dirlock");
    rl_dirlock_t *a = rl_dirlock_take(dir, err, sizeof(err));

    cr_assert_not_null(a, "%s", err);
    /* flock locks belong to the open file, so a second open in the same
     * process is refused too. */
    cr_assert_null(rl_dirlock_take(dir, err, sizeof(err)));
    snprintf(want, sizeof(want), "(pid %ld)", (long)getpid());
    cr_assert_not_null(strstr(err, want), "%s", err);
    cr_assert_not_null(strstr(err, dir), "%s", err);
    rl_dirlock_release(a);
    a = rl_dirlock_take(dir, err, sizeof(err));
    cr_assert_not_null(a, "free again after release: %s", err);
    rl_dirlock_release(a);
    rl_dirlock_release(NULL);
    tu_tmpdir_remove(dir);
}

Test(dirlock, a_killed_holder_leaves_no_stale_lock)
{
    char dir[256], err[256], want[64];
    int ready[2];
    char c;
    tu_tmpdir_make(dir, sizeof(dir), "dirlock");

    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        rl_dirlock_t *l = rl_dirlock_take(dir, err, sizeof(err));
        if (write(ready[1], l ? "y" : "n", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(c, 'y');
    cr_assert_null(rl_dirlock_take(dir, err, sizeof(err)), "held by the child");
    snprintf(want, sizeof(want), "(pid %ld)", (long)pid);
    cr_assert_not_null(strstr(err, want), "%s", err);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    rl_dirlock_t *l = rl_dirlock_take(dir, err, sizeof(err));
    cr_assert_not_null(l, "after SIGKILL: %s", err);
    rl_dirlock_release(l);
    close(ready[0]);
    close(ready[1]);
    tu_tmpdir_remove(dir);
}

Test(dirlock, missing_directory_is_an_error)
{
    char err[256];
    cr_assert_null(rl_dirlock_take("/nonexistent/relay-dirlock", err, sizeof(err)));
    cr_assert_not_null(strstr(err, "/nonexistent/relay-dirlock/.lock"), "%s", err);
}
