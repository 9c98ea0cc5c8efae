import signal
import sys

try:
    from bench.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: nothing has started, nothing to close
    sys.exit(130)

status = main()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # everything is recorded and printed: a late Ctrl-C changes nothing
sys.exit(status)
