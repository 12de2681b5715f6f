"""The control plane's service layer. The CLI, the admin API (and later the web UI) call these;
route handlers and commands hold no logic of their own."""
