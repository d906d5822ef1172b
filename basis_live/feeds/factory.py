"""Open the market feed a command asked for: ``open_feed("sample")`` or ``open_feed("replay", path)``.

Kept import-light on purpose (the CLI imports it on every start): the feed modules, and PyYAML with
the replay feed, are imported only when a feed of that kind is opened.
"""

from __future__ import annotations

from pathlib import Path

from basis_live.feeds.base import FeedError, MarketFeed

#: Feed kinds ``open_feed`` accepts.
FEED_KINDS: tuple[str, ...] = ("sample", "replay", "live")


def open_feed(kind: str, data: Path | None = None, scenario: str | None = None, seed: int = 7) -> MarketFeed:
    """Build a feed: "sample" -> SampleFeed(seed, scenario); "replay" -> ReplayFeed.from_path(data).

    ``data`` (a manifest file or a directory holding manifest.yaml) is required for, and only for,
    replay; ``scenario`` applies only to the sample feed; ``seed`` only matters for the sample feed.
    Raises FeedError with a one-line message for an unknown kind or a bad combination.
    """
    if kind == "sample":
        if data is not None:
            raise FeedError(f"a data path ({data}) is only for the replay feed; the sample feed is built in")
        from basis_live.feeds.sample import SampleFeed

        return SampleFeed(seed=seed, scenario=scenario)
    if kind == "replay":
        if data is None:
            raise FeedError("the replay feed needs a data path: a manifest file or a directory holding manifest.yaml")
        if scenario is not None:
            raise FeedError(f"scenario {scenario!r} applies only to the sample feed, not to replayed data")
        from basis_live.feeds.replay import ReplayFeed

        return ReplayFeed.from_path(data)
    if kind == "live":
        if data is not None or scenario is not None:
            raise FeedError("the live feed takes neither a data path nor a scenario")
        from basis_live.config import environment_from_env
        from basis_live.feeds.live import LiveFeed

        return LiveFeed(environment_from_env()[0])
    raise FeedError(f"unknown feed kind {kind!r}; known kinds: {', '.join(FEED_KINDS)}")
