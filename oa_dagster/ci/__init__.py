"""The CI jobs' rules, without Dagster: what a pull request changes, and how its results reach GitHub.

- `github_api`: the GitHub REST client CI jobs use (changed files of a pull request or a comparison, a
  file at a commit, commit statuses, the one results comment per pull request), with retries on 5xx and rate
  limits and never the token in a message.
- `plan`: which layer entries a pull request (or push) adds or changes against its base, each source file
  validated under the strict rule (no local files), with invalid and removed files listed; the job key.
- `reporting`: what GitHub is told: status descriptions within 140 characters, the results comment.

Dagster's sensor and assets call these; keeping them plain makes them testable against a fake GitHub API.
"""
