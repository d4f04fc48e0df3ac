from working.models import Base
from working.runtime.migrations import run_env

run_env(Base.metadata)
