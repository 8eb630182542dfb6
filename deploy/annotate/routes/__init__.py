"""One router per concern: the pages (login, labelling, review), labelling's API, review's API."""
