"""The demo's synthetic users: who follows from which scene, who reads the article, reserves, buys, shares, votes,
answers the survey or has gone quiet. Everything is drawn from one ``random.Random(seed)``, so a seed and a size
give the same people doing the same things on every run."""

from __future__ import annotations

import random
from dataclasses import dataclass

SCENES = (("store-qr", 40), ("live-poster", 25), ("article-footer", 15), ("friend-share", 12), ("menu", 8))
USER_ID_BASE = 2088_1021_0000_0000


@dataclass(frozen=True)
class User:
    """One synthetic user; ``user_id`` is a 2088… Alipay user id (shared by the life account and its mini programs)."""

    index: int
    user_id: str
    scene: str
    unfollows: bool = False  # follows, then unfollows before the campaign starts
    lapsed: bool = False  # last opened the mini program days ago and did nothing since: the come-back rule's target
    reads: bool = False  # opens the article's tracked link
    reads_to_end: bool = False
    reserves: bool = False  # early-bird reservation in preheat
    views_product: bool = False  # product page during the live stream (browse → maybe no order → coupon)
    flash: bool = False  # takes a flash-sale unit
    orders: bool = False  # pays an order (trade notification)
    shares: bool = False
    enters_ugc: bool = False
    votes: bool = False
    claims: bool = True  # if drawn as a winner, claims the prize
    answers_survey: bool = False
    rating: int = 5

    @property
    def tail(self) -> str:
        return self.user_id[-4:]


def make_population(n: int, seed: int) -> list[User]:
    """``n`` users; shares of each behaviour are fixed, who does what is drawn from ``seed``."""
    if n < 1:
        raise ValueError("the demo needs at least one user")
    rng = random.Random(seed)
    names = [s for s, _ in SCENES]
    weights = [w for _, w in SCENES]
    users = []
    for i in range(n):
        unfollows = rng.random() < 0.03
        lapsed = not unfollows and rng.random() < 0.05
        active = not (unfollows or lapsed)
        reads = active and rng.random() < 0.45
        views = active and rng.random() < 0.30
        flash = active and rng.random() < 0.12
        users.append(
            User(
                index=i,
                user_id=str(USER_ID_BASE + i + 1),
                scene=rng.choices(names, weights)[0],
                unfollows=unfollows,
                lapsed=lapsed,
                reads=reads,
                reads_to_end=reads and rng.random() < 0.6,
                reserves=active and rng.random() < 0.30,
                views_product=views,
                flash=flash,
                orders=flash or (views and rng.random() < 0.35),
                shares=active and rng.random() < 0.18,
                enters_ugc=active and rng.random() < 0.03,
                votes=active and rng.random() < 0.25,
                claims=rng.random() < 0.85,
                answers_survey=active and rng.random() < 0.20,
                rating=rng.choices([5, 4, 3, 2, 1], [50, 30, 12, 5, 3])[0],
            )
        )
    if not any(u.enters_ugc for u in users):  # the vote needs an entry even for tiny populations
        first = next((u for u in users if not (u.unfollows or u.lapsed)), None)
        if first is not None:
            users[first.index] = User(**{**first.__dict__, "enters_ugc": True})
    return users
