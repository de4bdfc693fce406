"""Docker label keys ossctl puts on what it creates: the one place they are spelled.

Containers of a release carry ``MANAGED``, ``RELEASE``, ``PROFILE`` and the small facts
below (enough to say what runs even without the engine-side ledger); the ledger holder,
its volume and the per-profile lock carry ``LEDGER`` / ``LOCK``. Both ``serve`` (which
creates them) and ``gpu`` (which maps GPU processes to releases) read these names.
"""

PREFIX = "ossctl."
MANAGED = "ossctl.managed"
RELEASE = "ossctl.release"
PROFILE = "ossctl.profile"
KIND = "ossctl.kind"
SOURCE = "ossctl.source"
MODEL_ID = "ossctl.model_id"
COMPOSITE = "ossctl.composite_sha256"
MODEL_REPO = "ossctl.model_repo"
MODEL_REVISION = "ossctl.model_revision"
CTX = "ossctl.ctx"
PORT = "ossctl.port"
ROLE = "ossctl.role"  # "frontdoor" / "trial": not a release (no MANAGED), never counted as one
FRONTDOOR_LISTEN = "ossctl.frontdoor.listen"
FRONTDOOR_ADMIN_PORT = "ossctl.frontdoor.admin_port"
TRIAL_OWNER = "ossctl.trial.owner"  # JSON: the process that must remove it (releases.process_owner)
TRIAL_CREATED = "ossctl.trial.created"
TRIAL_PROFILE = "ossctl.trial.profile"  # not PROFILE: nothing that lists a profile's releases sees it
FRONTDOOR_KIND = "ossctl.frontdoor.kind"  # "haproxy" | "caddy": which proxy the container runs
LEDGER = "ossctl.ledger"
LOCK = "ossctl.lock"
PROBE = "ossctl.probe"
