#ifndef SLUICE_CGPGME_SHIM_H
#define SLUICE_CGPGME_SHIM_H
/* GnuPG Made Easy (Debian's libgpgme-dev): OpenPGP decryption and signature checks of
   delivered files, through the gpg the machine has, with a keyring Sluice owns. */
#include <gpgme.h>

/* gpgme_err_code as a plain function (the header's is an inline over gpg-error's). */
static inline unsigned int sluice_gpgme_code(gpgme_error_t err) { return gpgme_err_code(err); }
#endif
