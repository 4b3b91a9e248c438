"""The operations tests run a whole mailscore, as the fault tests do: their fixtures are used
here as they are."""

from tests.reliability.conftest import (  # noqa: F401 - fixtures
    mail_sources,
    postgres_cluster,
    pytest_runtest_makereport,
    reliability_dir,
    start_module_system,
    start_system,
    verification_farm,
)
