"""The status page's sessions: a flood of visitors who never log in cannot log anyone out."""

from qbo_sync.dashboard.security import MAX_SESSIONS, Sessions


def test_cookie_less_requests_push_out_only_sessions_that_never_logged_in():
    sessions = Sessions()
    visitor = sessions.new()
    person = sessions.renew(visitor, logged_in=True)
    assert sessions.get(visitor.id) is None  # renewed: the old id is gone (no fixation)
    first_anonymous = sessions.new()
    for _ in range(MAX_SESSIONS + 1):  # what `curl /login` in a loop makes
        sessions.new()
    kept = sessions.get(person.id)
    assert kept is person and kept.logged_in
    assert sessions.get(first_anonymous.id) is None  # the flood's own oldest went first
