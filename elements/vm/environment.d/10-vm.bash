# Defaults for the vm element's bootloader; set any of them before the
# build to override.

# Seconds the GRUB menu waits (diskimage-builder's default is 5; a VM
# nobody watches boots faster with 1, and 0 still boots the default).
export DIB_GRUB_TIMEOUT=${DIB_GRUB_TIMEOUT:-1}

# Appended to the kernel command line after `root=LABEL=... ro`. The
# default sends the console to both the screen and the first serial port,
# where clouds and `qemu -serial` show it. Set it to an empty string for
# no extra arguments.
if [ -z "${DIB_BOOTLOADER_DEFAULT_CMDLINE+set}" ]; then
    case ${ARCH:-amd64} in
        arm64 | aarch64) DIB_BOOTLOADER_DEFAULT_CMDLINE="console=tty0 console=ttyAMA0,115200n8" ;;
        *) DIB_BOOTLOADER_DEFAULT_CMDLINE="console=tty0 console=ttyS0,115200n8" ;;
    esac
fi
export DIB_BOOTLOADER_DEFAULT_CMDLINE
