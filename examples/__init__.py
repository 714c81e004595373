"""Two small web apps that moved their background work from Celery and RQ to Conveyor:
`booking` (Starlette) and `jobboard` (Flask). Each README shows the code before and after."""
