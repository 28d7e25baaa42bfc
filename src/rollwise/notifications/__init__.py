"""Notifications: rollout events sent to webhooks and chat, from a bounded queue.

``targets`` decides (which events a target wants, what is sent), ``schedule`` holds the
pure parts of delivery (the queue's bound, the backoff), ``settings`` reads the
``notifications:`` section of the config, and ``sender`` does the HTTP, off every
tick's and request's path.
"""

from rollwise.notifications.targets import EVENT_NAMES, Target, payload, summary, wants

__all__ = ["EVENT_NAMES", "Target", "payload", "summary", "wants"]
