"""The test harness: declarative SIPp scenarios against the real lab, timelines and JUnit reports."""
