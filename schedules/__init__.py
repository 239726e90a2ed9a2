"""When and how often to contact a debtor: the ladder, contact windows, caps, profiles.

Pure policy: nothing here reads the clock, the network or the application. The
worker composes it; the CLI calls it to explain; tests drive it with any `now`.
"""

from schedules.decide import decide
from schedules.decision import Decision
from schedules.facts import Attempt, Facts
from schedules.loader import ProfileError, Profiles
from schedules.profile import Profile

__all__ = ["Attempt", "Decision", "Facts", "Profile", "ProfileError", "Profiles", "decide"]
