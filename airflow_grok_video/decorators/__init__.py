"""TaskFlow decorators of the Grok video provider: ``@task.grok_video``."""
