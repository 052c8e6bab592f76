"""Dates as the app writes them everywhere: ISO 8601 (2026-12-07), as its tables, CSV files and
API do, so that one page never says "Dec. 7, 2026" beside "2026-12-07". Django's English
locale supplies every format not named here (the forms' input formats among them)."""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
