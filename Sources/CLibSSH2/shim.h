#ifndef SLUICE_CLIBSSH2_SHIM_H
#define SLUICE_CLIBSSH2_SHIM_H
/*
 * libssh2 for Swift. Swift does not import C function-like macros, so each macro
 * Sluice uses gets a `static inline` wrapper here that calls the `_ex` function.
 * Also: the keyboard-interactive callback, which answers every prompt with the
 * password stored in the session's abstract pointer.
 */
#include <libssh2.h>
#include <libssh2_sftp.h>

/* Sluice links the libssh2 that scripts/deps.sh builds (1.11, patched), never a system one:
   its pkg-config file (sluice-libssh2.pc) puts the build's headers first, and only that build
   has sluice_libssh2_build.h. */
#if __has_include(<sluice_libssh2_build.h>)
#include <sluice_libssh2_build.h>
#else
#error "Sluice's libssh2 was not found: run `bash scripts/build.sh` (or `. scripts/deps.sh && install_deps`), which builds it and sets PKG_CONFIG_PATH=<checkout>/.deps/pkgconfig for swift build"
#endif
#if LIBSSH2_VERSION_NUM < 0x010b00
#error "Sluice needs libssh2 1.11 or later (scripts/deps.sh builds it)"
#endif
#include <stdlib.h>
#include <string.h>

static inline LIBSSH2_SESSION *sluice_ssh2_session_init(void) {
    return libssh2_session_init_ex(NULL, NULL, NULL, NULL);
}

static inline int sluice_ssh2_session_disconnect(LIBSSH2_SESSION *s, const char *why) {
    return libssh2_session_disconnect_ex(s, SSH_DISCONNECT_BY_APPLICATION, why, "");
}

static inline int sluice_ssh2_userauth_password(LIBSSH2_SESSION *s, const char *user, const char *password) {
    return libssh2_userauth_password_ex(s, user, (unsigned int)strlen(user), password, (unsigned int)strlen(password), NULL);
}

static inline int sluice_ssh2_userauth_publickey_fromfile(LIBSSH2_SESSION *s, const char *user,
                                                          const char *private_key, const char *passphrase) {
    return libssh2_userauth_publickey_fromfile_ex(s, user, (unsigned int)strlen(user), NULL, private_key, passphrase);
}

static inline char *sluice_ssh2_userauth_list(LIBSSH2_SESSION *s, const char *user) {
    return libssh2_userauth_list(s, user, (unsigned int)strlen(user));
}

/* Answers every keyboard-interactive prompt with the password in *abstract (a C string). */
static inline void sluice_ssh2_kbdint_answer(const char *name, int name_len, const char *instruction, int instruction_len,
                                             int num_prompts, const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
                                             LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract) {
    (void)name; (void)name_len; (void)instruction; (void)instruction_len; (void)prompts;
    const char *password = abstract ? (const char *)*abstract : NULL;
    for (int i = 0; i < num_prompts; i++) {
        const char *answer = password ? password : "";
        responses[i].text = strdup(answer);
        responses[i].length = responses[i].text ? (unsigned int)strlen(answer) : 0;
    }
}

/* Keyboard-interactive login answering every prompt with `password`. */
static inline int sluice_ssh2_userauth_kbdint(LIBSSH2_SESSION *s, const char *user, const char *password) {
    void **abstract = libssh2_session_abstract(s);
    void *saved = *abstract;
    *abstract = (void *)password;
    int rc = libssh2_userauth_keyboard_interactive_ex(s, user, (unsigned int)strlen(user), sluice_ssh2_kbdint_answer);
    *abstract = saved;
    return rc;
}

static inline LIBSSH2_SFTP_HANDLE *sluice_sftp_open_read(LIBSSH2_SFTP *sftp, const char *path, unsigned int len) {
    return libssh2_sftp_open_ex(sftp, path, len, LIBSSH2_FXF_READ, 0, LIBSSH2_SFTP_OPENFILE);
}

static inline LIBSSH2_SFTP_HANDLE *sluice_sftp_opendir(LIBSSH2_SFTP *sftp, const char *path, unsigned int len) {
    return libssh2_sftp_open_ex(sftp, path, len, 0, 0, LIBSSH2_SFTP_OPENDIR);
}

/* One directory entry; the name is not NUL-terminated in general: use the returned length. */
static inline int sluice_sftp_readdir(LIBSSH2_SFTP_HANDLE *h, char *buffer, size_t len, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
    return libssh2_sftp_readdir_ex(h, buffer, len, NULL, 0, attrs);
}

static inline int sluice_sftp_close(LIBSSH2_SFTP_HANDLE *h) {
    return libssh2_sftp_close_handle(h);
}

static inline int sluice_sftp_fstat(LIBSSH2_SFTP_HANDLE *h, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
    return libssh2_sftp_fstat_ex(h, attrs, 0);
}

static inline int sluice_sftp_stat(LIBSSH2_SFTP *sftp, const char *path, unsigned int len, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
    return libssh2_sftp_stat_ex(sftp, path, len, LIBSSH2_SFTP_STAT, attrs);
}

static inline int sluice_sftp_lstat(LIBSSH2_SFTP *sftp, const char *path, unsigned int len, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
    return libssh2_sftp_stat_ex(sftp, path, len, LIBSSH2_SFTP_LSTAT, attrs);
}

static inline int sluice_sftp_unlink(LIBSSH2_SFTP *sftp, const char *path, unsigned int len) {
    return libssh2_sftp_unlink_ex(sftp, path, len);
}

static inline int sluice_sftp_mkdir(LIBSSH2_SFTP *sftp, const char *path, unsigned int len, long mode) {
    return libssh2_sftp_mkdir_ex(sftp, path, len, mode);
}

/* A rename that never overwrites (no OVERWRITE flag; ATOMIC and NATIVE as OpenSSH's server allows). */
static inline int sluice_sftp_rename_noreplace(LIBSSH2_SFTP *sftp, const char *from, unsigned int from_len,
                                               const char *to, unsigned int to_len) {
    return libssh2_sftp_rename_ex(sftp, from, from_len, to, to_len, LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE);
}

/* Resolves `path` on the server (symlinks and `..` included). Returns the length, or < 0. */
static inline int sluice_sftp_realpath(LIBSSH2_SFTP *sftp, const char *path, unsigned int len, char *target, unsigned int max) {
    return libssh2_sftp_symlink_ex(sftp, path, len, target, max, LIBSSH2_SFTP_REALPATH);
}

static inline int sluice_ssh2_last_error(LIBSSH2_SESSION *s, char **message) {
    int len = 0;
    return libssh2_session_last_error(s, message, &len, 0);
}

#endif
