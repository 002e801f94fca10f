"""Runs a command in a pseudo-terminal of 120 columns, as a person at a terminal would, and
prints everything it drew (progress bars included); exits with the command's exit code.

  run_in_pty.py COMMAND [ARG...]
"""

import fcntl
import os
import pty
import struct
import sys
import termios


def main() -> None:
    pid, master = pty.fork()
    if pid == 0:
        fcntl.ioctl(sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.execvp(sys.argv[1], sys.argv[1:])
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        drawn.extend(chunk)
    _, status = os.waitpid(pid, 0)
    sys.stdout.buffer.write(drawn)
    sys.stdout.flush()
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
