"""A target's ICMP error budget, inferred from what comes back, and the pace it allows.

Rules and theory:
- A closed UDP port is known only by the ICMP port-unreachable it draws, and hosts ration
  those. Linux (``net/ipv4/icmp.c``, ``inet_peer_xrlim_allow``) keeps a token bucket per
  destination: one token per ``icmp_ratelimit`` (1000 ms by default; for IPv6 the
  interval shrinks for shorter route prefixes, 250 ms for a /64), at most six tokens
  banked. An error sent costs a token; an error suppressed costs nothing; a probe that
  draws no error (a silent port, an open one) costs nothing either.
- So a probe that went unanswered proves something only if the target had a token when
  it arrived: only then would a closed port have answered. :class:`IcmpBudget` models the
  bucket from the errors seen (each consumed a token, at about send time plus half the
  RTT) and judges every silence in hindsight, when the probe times out and every error
  that arrived before it has been seen: :meth:`IcmpBudget.proves_silence`. Silences that
  prove nothing are not counted as tries; the port is simply probed again.
- The judgement is deliberately pessimistic: it assumes the bucket was empty after every
  error, and that refills take a tenth longer than measured. A model that drifts ahead
  of the target would call closed ports silent; one that lags only costs probes.
- The bucket's size and rate are learned, not assumed. The size is the number of errors
  of the first burst (errors a few milliseconds apart). The interval starts at Linux's
  1 s (or what another host of the scan taught) and is then bounded from above by what
  came back: ``K`` errors spanning ``T`` seconds need ``K - burst`` refills at least, so
  the interval is at most ``T / (K - burst)``. Every such bound holds, so the estimate
  takes the smallest, and it errs only on the slow side.
- :class:`IcmpBudget.release_at` says when the next probe to the host may go: at once
  while the model has tokens to spare, otherwise at the next tick of a cadence several
  times faster than the refill, so that a token is used soon after it exists even where
  the model is pessimistic. Probes that find no token are free; only tokens are scarce.
- Nothing here reads a clock or touches a socket: times are passed in (seconds, any
  monotonic origin), which is how the tests drive it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["DEFAULT_INTERVAL", "IcmpBudget"]

# Linux's default icmp_ratelimit, and the bucket it banks (XRLIM_BURST_FACTOR).
DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.001
# Probes sent per refill interval while waiting for a token (see release_at).
CADENCE = 8
# Errors closer together than this (seconds) are one burst.
BURST_GAP = 0.005
# Linux's bucket size: the bound on the interval assumes at least this many banked tokens.
LINUX_BURST = 6
# Errors remembered for judging silences in hindsight.
HISTORY = 256
# The judgement's margin on the measured interval.
PAD = 1.1
# The most recent errors the interval's bound is taken over.
WINDOW = 64


class IcmpBudget:
    """One host's ICMP error budget: a token bucket of ``burst`` tokens, one per ``interval``.

    ``errors`` are the times (as the target saw them) at which the host sent the errors
    seen so far, oldest first; the bucket is assumed full before the first.
    """

    __slots__ = ("_history", "burst", "interval", "learned")

    def __init__(self, errors: list[float], *, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = max(MIN_INTERVAL, interval)
        # The first burst: the leading errors that came within BURST_GAP of each other.
        burst = 1
        while burst < len(errors) and errors[burst] - errors[burst - 1] <= BURST_GAP:
            burst += 1
        self.burst = burst
        self.learned = False  # whether the interval was measured rather than assumed
        # (time of an error, tokens left just after it), oldest first.
        self._history: deque[tuple[float, float]] = deque(maxlen=HISTORY)
        for t in errors:
            self._consume(t, learn=False)

    @property
    def errors(self) -> int:
        """How many of the host's errors the model holds (at most ``HISTORY``)."""
        return len(self._history)

    def tokens(self, t: float) -> float:
        """Tokens the model says the host has at time ``t`` (after every error before it)."""
        return self._tokens_at(t, len(self._history))

    def error(self, t: float) -> None:
        """The host sent an ICMP error at time ``t`` (the error's probe's arrival)."""
        self._consume(t, learn=True)

    def proves_silence(self, t: float, jitter: float) -> bool:
        """Whether a probe that reached the host at ``t`` (within ``jitter``) and drew no
        answer proves the port silent: the host had a token for it, even after the errors
        it sent around that moment."""
        history = self._history
        start = t - jitter
        index = len(history)
        while index and history[index - 1][0] > start:
            index -= 1
        if index == 0:
            tokens = float(self.burst)
        else:  # pessimistic: empty after the last error, and refilling a little slower
            tokens = min(float(self.burst), (start - history[index - 1][0]) / (self.interval * PAD))
        # Errors sent around the probe's arrival may have taken the token it needed.
        racing = sum(1 for when, _ in list(history)[index:] if when <= t + jitter)
        return tokens - racing >= 1.0

    def release_at(self, now: float, ahead: float, outstanding: int, last: float) -> float:
        """When the next probe may be sent to the host.

        ``ahead`` is the time a probe takes to reach it, ``outstanding`` the probes sent
        to it that have not been answered or given up, ``last`` when the last one went.
        """
        if self.tokens(now + ahead) - outstanding >= 1.0:
            return now
        tick = last + self.interval / CADENCE
        # When the model's bucket will hold a token for every outstanding probe, and one more.
        need = outstanding + 1.0 - self.tokens(now + ahead)
        ready = now + need * self.interval if need <= self.burst else tick
        return max(now, min(tick, ready))

    # -- the model ------------------------------------------------------------------

    def _tokens_at(self, t: float, index: int) -> float:
        """Tokens at ``t``, counting only the first ``index`` errors of the history."""
        if index == 0:
            return float(self.burst)
        when, left = self._history[index - 1]
        return min(float(self.burst), left + max(0.0, t - when) / self.interval)

    def _consume(self, t: float, *, learn: bool) -> None:
        history = self._history
        # Errors arrive in about the order they were sent; keep the history sorted anyway.
        if history and t < history[-1][0]:
            t = history[-1][0]
        left = max(0.0, self.tokens(t) - 1.0)
        history.append((t, left))
        if learn:
            self._bound_interval()

    def _bound_interval(self) -> None:
        """Lower the interval to the bound the latest errors set on it, if that is lower."""
        history, banked = self._history, max(self.burst, LINUX_BURST)
        count = min(len(history), WINDOW)
        if count < 2 * banked + 2:
            return
        span = history[-1][0] - history[-count][0]
        bound = span / (count - banked)
        if bound < self.interval:
            self.interval = max(MIN_INTERVAL, bound)
            self.learned = True
