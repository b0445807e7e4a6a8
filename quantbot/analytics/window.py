"""Rolling windows over feed time: sparse buckets, bounded to the window, cheap to update on every tick.

A window of `window_s` seconds at resolution `bucket_s` holds one bucket per `bucket_s` of feed time that
saw something (sparse: a quiet token costs nothing), each keyed by its start (a multiple of `bucket_s`).
At a moment `now`, the window is the `window_s / bucket_s` buckets ending with the one holding `now`:
starts from `bucket(now) - window_s + bucket_s` to `bucket(now)`. A bucket older than that leaves the window
for good (it is dropped); a `PriceWindow` keeps the close of the last one to leave as the price before the
window (the reference of a 24 h change).

Ticks may arrive a little out of order (a price feed's publish time against block times, a backfilled
transaction): each is counted in the bucket of its own time, if that bucket is still in the window.

The columns are `array`s: 8 bytes a number in memory and in a recovery snapshot.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right

from quantbot.analytics.slotted import Slotted

NOTHING = -1
"""`PriceWindow.cached_at` before any aggregate was cached (bucket starts are never negative)."""
_HIGHEST = float("inf")
_LOWEST = -_HIGHEST


def bucket_of(at: int, bucket_s: int) -> int:
    """The start of the bucket holding feed time `at`."""
    return at - at % bucket_s


class PriceWindow(Slotted):
    """One token's prices over the window: per bucket high, low, close and USD volume.

    The window's aggregates over every bucket but the newest are cached per `now` bucket (`cached_at`), so a
    tick costs a bucket update and a few comparisons; the cache is rebuilt once per bucket, or when an older
    bucket changed.

    Attributes:
        starts: the buckets' starts, ascending.
        highs, lows, closes, volumes: the buckets' prices (USD) and USD volume, by position (no open: no
            statistic needs one, and it would be a sixth of every window in the recovery snapshot).
        before: the close of the newest bucket that left the window (the price at or last before the window's
            start, at bucket resolution); None while the window reaches back no further than its first tick.
        cached_at: the `now` bucket the cached aggregates are for (`NOTHING`: none).
        older_high, older_low, older_volume: over the window's buckets older than `cached_at`.
    """

    __slots__ = (
        "before",
        "cached_at",
        "closes",
        "highs",
        "lows",
        "older_high",
        "older_low",
        "older_volume",
        "starts",
        "volumes",
    )

    def __init__(self) -> None:
        self.starts: array[int] = array("q")
        self.highs: array[float] = array("d")
        self.lows: array[float] = array("d")
        self.closes: array[float] = array("d")
        self.volumes: array[float] = array("d")
        self.before: float | None = None
        self.cached_at = NOTHING
        self.older_high = _LOWEST
        self.older_low = _HIGHEST
        self.older_volume = 0.0

    @property
    def last_price(self) -> float | None:
        """The newest price: the newest bucket's close, or the price before the window when none is left."""
        closes = self.closes
        return closes[-1] if closes else self.before

    def add(self, bucket: int, price: float, volume_usd: float, now_bucket: int, window_s: int) -> None:
        """Count a tick of `price` (and `volume_usd` traded) in `bucket`; nothing if it is older than the window."""
        starts = self.starts
        if starts and starts[-1] == bucket:
            if price > self.highs[-1]:
                self.highs[-1] = price
            elif price < self.lows[-1]:
                self.lows[-1] = price
            self.closes[-1] = price
            self.volumes[-1] += volume_usd
            if bucket != now_bucket:  # a late tick: the cached older buckets changed
                self.cached_at = NOTHING
            return
        if bucket <= now_bucket - window_s:
            return
        if not starts or bucket > starts[-1]:
            starts.append(bucket)
            self.highs.append(price)
            self.lows.append(price)
            self.closes.append(price)
            self.volumes.append(volume_usd)
            if bucket != now_bucket:
                self.cached_at = NOTHING
            if starts[0] <= bucket - window_s:
                self._drop_before(bucket - window_s)
            return
        # An older bucket than the newest: rare (a late tick).
        self.cached_at = NOTHING
        at = bisect_left(starts, bucket)
        if starts[at] == bucket:
            self.highs[at] = max(self.highs[at], price)
            self.lows[at] = min(self.lows[at], price)
            self.volumes[at] += volume_usd
            # Not the bucket's newest price: its close stays.
            return
        starts.insert(at, bucket)
        for column in (self.highs, self.lows, self.closes):
            column.insert(at, price)
        self.volumes.insert(at, volume_usd)

    def observe(
        self, bucket: int, price: float, volume_usd: float, now_bucket: int, window_s: int
    ) -> tuple[float | None, float | None, float, float | None]:
        """`add`, then `stats` at `now_bucket`, in one call; the hot path (a tick in the current bucket) inline."""
        starts = self.starts
        if bucket != now_bucket or self.cached_at != now_bucket or not starts or starts[-1] != bucket:
            self.add(bucket, price, volume_usd, now_bucket, window_s)
            return self.stats(now_bucket, window_s)
        highs, lows, volumes = self.highs, self.lows, self.volumes
        high, low = highs[-1], lows[-1]
        if price > high:
            highs[-1] = high = price
        elif price < low:
            lows[-1] = low = price
        self.closes[-1] = price
        volumes[-1] = volume = volumes[-1] + volume_usd
        older_high, older_low = self.older_high, self.older_low
        return (
            high if high > older_high else older_high,
            low if low < older_low else older_low,
            self.older_volume + volume,
            self.before,
        )

    def _drop_before(self, oldest_excluded: int) -> None:
        """Drop the buckets starting at or before `oldest_excluded`, keeping the last one's close as `before`."""
        gone = bisect_right(self.starts, oldest_excluded)
        if gone:
            self.before = self.closes[gone - 1]
            for column in (self.highs, self.lows, self.closes, self.volumes):
                del column[:gone]
            del self.starts[:gone]
            self.cached_at = NOTHING

    def _cache(self, now_bucket: int, window_s: int) -> None:
        """Drop what left the window at `now_bucket`; aggregate the buckets older than it."""
        starts = self.starts
        if starts and starts[0] <= now_bucket - window_s:
            self._drop_before(now_bucket - window_s)
        older = bisect_left(starts, now_bucket)
        if older:
            self.older_high = max(self.highs[:older])
            self.older_low = min(self.lows[:older])
            self.older_volume = sum(self.volumes[:older])
        else:
            self.older_high, self.older_low, self.older_volume = _LOWEST, _HIGHEST, 0.0
        self.cached_at = now_bucket

    def stats(self, now_bucket: int, window_s: int) -> tuple[float | None, float | None, float, float | None]:
        """(high, low, USD volume, price before the window) over the window at `now_bucket`.

        High and low are None when nothing is left in the window.
        """
        if self.cached_at != now_bucket:
            self._cache(now_bucket, window_s)
        high, low, volume = self.older_high, self.older_low, self.older_volume
        starts = self.starts
        if starts and starts[-1] == now_bucket:
            newest_high, newest_low = self.highs[-1], self.lows[-1]
            high = newest_high if newest_high > high else high
            low = newest_low if newest_low < low else low
            volume += self.volumes[-1]
        if low == _HIGHEST:
            return None, None, volume, self.before
        return high, low, volume, self.before


class SumWindow(Slotted):
    """Sums per bucket over the window (a pool's or a venue's USD volume, the whales' count and flows).

    Attributes:
        starts: the buckets' starts, ascending.
        columns: one array of per-bucket sums per quantity, by position.
    """

    __slots__ = ("columns", "starts")

    def __init__(self, width: int = 1) -> None:
        self.starts: array[int] = array("q")
        self.columns: tuple[array[float], ...] = tuple(array("d") for _ in range(width))

    def add(self, bucket: int, value: float, window_s: int) -> None:
        """Add `value` to the first quantity in `bucket` (a single-quantity window's hot path)."""
        starts = self.starts
        if starts and starts[-1] == bucket:
            self.columns[0][-1] += value
            return
        self.add_all(bucket, (value,), window_s)

    def add_all(self, bucket: int, values: tuple[float, ...], window_s: int) -> None:
        """Add `values` (one per quantity, in order) in `bucket`; nothing if it is older than the window."""
        starts = self.starts
        if starts and starts[-1] == bucket:
            at = len(starts) - 1
        elif not starts or bucket > starts[-1]:
            starts.append(bucket)
            for column in self.columns:
                column.append(0.0)
            at = len(starts) - 1
            if starts[0] <= bucket - window_s:
                gone = bisect_right(starts, bucket - window_s)
                del starts[:gone]
                for column in self.columns:
                    del column[:gone]
                at -= gone
        else:
            if bucket <= starts[-1] - window_s:
                return
            at = bisect_left(starts, bucket)
            if at == len(starts) or starts[at] != bucket:
                starts.insert(at, bucket)
                for column in self.columns:
                    column.insert(at, 0.0)
        for column, value in zip(self.columns, values, strict=False):
            column[at] += value

    def totals(self, now_bucket: int, window_s: int) -> tuple[float, ...]:
        """Each quantity's sum over the window at `now_bucket` (what left it is dropped)."""
        starts = self.starts
        if starts and starts[0] <= now_bucket - window_s:
            gone = bisect_right(starts, now_bucket - window_s)
            del starts[:gone]
            for column in self.columns:
                del column[:gone]
        upto = bisect_right(starts, now_bucket)
        return tuple(sum(column[:upto], 0.0) for column in self.columns)

    @property
    def newest(self) -> int | None:
        """The newest bucket's start, or None when empty."""
        return self.starts[-1] if self.starts else None
