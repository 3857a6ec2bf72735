# The init system of every distribution kiln builds.
export DIB_INIT_SYSTEM=systemd
