"""What a conversation needs from the service: settings, the geocoder, where links point."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from geo.chat.messages import ChannelLimits
from geo.city.geocoding import Geocoder
from geo.settings import DEFAULT_CITY_TIMEZONE, ChatSettings, IntakeSettings, RoutingSettings

CITY_ZONE: Final = ZoneInfo(DEFAULT_CITY_TIMEZONE)
"""``ChatContext.zone`` when it is not given: ``ISSUEMAP_CITY_TIMEZONE``'s default."""


@dataclass(frozen=True, slots=True)
class ChatContext:
    """Everything the conversation core reads besides the database, passed in explicitly.

    Attributes
    ----------
    public_url
        The service's public address (``NotificationSettings.public_url``): status pages
        and photos are linked under it.
    public_rounding_m
        The public location grid (``PrivacySettings``): distances to reports nearby are
        told as the public sees them.
    limits
        What the channel can show (``geo.chat.line_api.LINE_LIMITS`` for LINE).
    zone
        The city's time zone (``CitySettings.zone``): due times are told in it.
    """

    routing: RoutingSettings
    intake: IntakeSettings
    chat: ChatSettings
    geocoder: Geocoder
    public_url: str
    public_rounding_m: float
    limits: ChannelLimits
    zone: tzinfo = CITY_ZONE
