# A plain JupyterHub (one machine, no Kubernetes) serving the explainers to a class.
#   pip install jupyterhub jupyterhub-systemdspawner jupyterhub-idle-culler
#   jupyterhub -f jupyterhub_config.py
c = get_config()  # noqa: F821  (provided by JupyterHub)

c.JupyterHub.bind_url = "http://127.0.0.1:8000"          # put nginx/TLS in front of it

# Log-in: the machine's own accounts (PAM, real passwords). Nobody is let in until you list
# the students (fails closed); for a university SSO or an LMS use OAuthenticator or
# LTIAuthenticator instead (see hosting.md). Never the dummy authenticator on a network.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allow_all = False
c.Authenticator.allowed_users = set()                      # fill in: {"student1", "student2", ...}
c.Authenticator.admin_users = set()

# SystemdSpawner runs each student's server in its own systemd unit and *enforces* the memory
# and CPU limits below with cgroups (the default LocalProcessSpawner ignores them).
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.Spawner.default_url = "/voila/render/00_tour.ipynb"
c.Spawner.notebook_dir = "/srv/notebooks"
c.Spawner.args = ["--VoilaConfiguration.template=explainers", "--VoilaConfiguration.strip_sources=True",
                  '--ServerApp.tornado_settings={"websocket_max_message_size": 67108864}']
c.Spawner.environment = {"EXPLAINERS_OFFLINE": "1", "EXPLAINERS_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
c.Spawner.mem_limit = "2G"
c.Spawner.cpu_limit = 1.0
# stop idle student servers (pip install jupyterhub-idle-culler)
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=1800"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
