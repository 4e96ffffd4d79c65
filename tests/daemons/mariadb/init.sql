-- An account the lab's client host may use: MariaDB then greets it with a handshake
-- (a host with no account at all gets error 1130 instead, before any handshake).
CREATE USER IF NOT EXISTS 'lab'@'198.18.0.%' IDENTIFIED BY 'lab-not-a-secret';
