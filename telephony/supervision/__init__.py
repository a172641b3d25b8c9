"""Supervision (跟踪督办): deadlines per state and overdue alerts."""
