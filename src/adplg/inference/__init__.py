"""From features or videos to scores and alerts: checkpoint loading, feature extraction, scoring, alert rules and
export of the scoring branch."""
