"""``python -m chaos.clock_shift manage.py ARGS…``: run ``manage.py`` with the wall clock moved
by ``CHAOS_CLOCK_OFFSET_SECONDS`` (a float, may be negative) and ticking on from there.

time-machine moves ``time.time``, ``datetime.now`` and their relatives, and leaves the monotonic
clocks alone, so sleeps, lock waits and django-q2's timers behave as usual. Every process of a
scenario gets the same offset from the real clock, so all of them agree on the time; processes
forked from this one (django-q2's workers) inherit it.
"""

import os
import runpy
import sys
import time

import time_machine

offset = float(os.environ["CHAOS_CLOCK_OFFSET_SECONDS"])
time_machine.travel(time.time() + offset, tick=True).start()
# time-machine's clock starts ticking at its first reading: take it now, before any fork, so
# every child agrees with this process.
time.time()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
