"""A small Django project served by gunicorn in test_gunicorn.py: ``--preload`` loads it in the
master, which makes cache calls (and so holds connections) before forking its workers."""
