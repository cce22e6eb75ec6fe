"""Capture: embeddable forms and quizzes, their versions, submissions and double opt-in."""
