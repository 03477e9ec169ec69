"""Extensions as unbound singletons: bound to an app in create_app, imported anywhere."""

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from portal.crypto import DataVault
from portal.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
babel = Babel()
vault = DataVault()
# Who is signed in, resolved from the server-side session rows (portal/web/identity.py).
login_manager = LoginManager()
# Storage comes from RATELIMIT_STORAGE_URI (Redis, shared by every instance, in production).
# Every limit names what it counts (a customer, a subject, a network): portal/web/limits.py.
limiter = Limiter(key_func=get_remote_address, strategy="moving-window")
