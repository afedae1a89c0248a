// SluiceSFTP: The libssh2 wrapper: SSH sessions, SFTP files and folders, known_hosts, algorithm
// choice and negotiation errors.
