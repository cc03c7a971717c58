/* confine.h: the confinement of the workers that read untrusted bytes
 * (discover, fetch, unpack), on top of the user switch: unpack's own network
 * namespace, Landlock rules that limit writes to the directory the step owns,
 * and a seccomp allow-list per step whose default is to kill the process.
 * Called by worker_drop_privileges(); steps without a policy (the root ones)
 * are left alone. See docs/design.md, "Security model". */
#pragma once

/* Where the step may write once confined: dir_fd with everything below it,
 * and parent_fd (may be -1) for creating, removing and renaming the
 * directories directly in it (unpack's staging dir in releases/). The fds
 * must stay open until worker_drop_privileges() returns. A step that never
 * calls this may write nowhere. */
void confine_allow_writes(int dir_fd, int parent_fd);

/* As root, before the user switch: for a step without network,
 * enter a network namespace of its own when root may make one. */
int confine_enter(const char *step);

/* After the user switch and PR_SET_NO_NEW_PRIVS: the network namespace (as a
 * user+net namespace) if confine_enter() could not make it, then Landlock,
 * then seccomp. Nothing the step runs later can undo any of them. */
int confine_apply(const char *step);
