// SluiceServer: The service around the runtime: service lifecycle, systemd notify, health,
// metrics and status, the upload API, the web console, and the log handler.
