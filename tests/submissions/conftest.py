# The notebooks below are submissions for the grader's tests (attacks among them: they kill
# their kernel, loop forever, are not even JSON). nbval must never run them as tests.
collect_ignore_glob = ["*.ipynb"]
