-- Prosody for the real-daemon lab: plain c2s, no TLS, data in @TMP@.
daemonize = false
-- The lab runs daemons as root inside a namespace of their own; prosody refuses root
-- otherwise (mod_posix), and would shut down after opening its port.
run_as_root = true
pidfile = "@TMP@/prosody.pid"
data_path = "@TMP@"
c2s_ports = { @PORT@ }
s2s_ports = { }
interfaces = { "*" }
modules_enabled = { "disco"; "saslauth"; "version"; "ping" }
modules_disabled = { "s2s"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
log = { debug = "*console" }
VirtualHost "@ADDR@"
