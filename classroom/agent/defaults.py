"""The classroom box's default timings, apart from the code that uses them so that the
`tongbu` command can describe its options without loading the media stack."""

KEYFRAME_INTERVAL_S = 4.0  # a late subscriber or a lost packet recovers within this
REFRESH_S = 60.0  # --auto: timetable refresh while nothing is due
POLL_S = 2.0  # --auto: while a lesson is due to open (the scheduler opens it within seconds)
