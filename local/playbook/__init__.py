"""The seed playbook demo: `make run` and `lifelink demo --users N --speed X`.

About a thousand synthetic users (a fixed seed: the same people do the same things on every run) play the
playbook of the design brief on the local stack: two mini programs bound to one life account; follows from scene
codes through the signed life-account gateway (each new follower welcomed and made a silver member); an article
broadcast with a tracked link the readers open in the mini program; a three-phase campaign (topic push,
early-bird reservations, a live-stream flash sale, share tasks, a UGC vote, a seeded draw, claims, a survey);
the three automation rules (browsed-not-ordered coupon, first-order member guide, silent come-back gift); and
orders paid through signed trade notifications. A progress bar runs meanwhile; at the end, a summary and the HTML
report.

    lifelink_local.playbook.command.run_demo(stack, users, speed, seed) -> Summary   (on a started LocalStack)
    lifelink_local.playbook.command.main(argv) -> int      (`lifelink demo`: a stack of its own, then exit)

Modules: population (the users), timeline (the campaign's phases), driver (the story), progress (the bar),
summary (the closing numbers), command (the entry points).
"""
