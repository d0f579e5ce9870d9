"""The promotion stage: validation gates, the decision, aliases and history, approval, locks.

It sits above training (it judges what training registered) and below deploy (which serves
what it promoted).
"""
