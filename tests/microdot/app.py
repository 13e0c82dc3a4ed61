"""A small Microdot app for latch's interop test (tests/interop/microdot_app.rs).

The seed example's users, routes and login flow, on Microdot's own Session
and Login. It reads SECRET_KEY and PORT from the environment and serves on
127.0.0.1. Passwords are compared in plain text: this app only ever runs
inside the test.
"""
import os

from microdot import Microdot, redirect
from microdot.login import Login
from microdot.session import Session


class User:
    def __init__(self, id, username, password):
        self.id = id
        self.username = username
        self.password = password


USERS = {
    'user001': User('user001', 'susan', 'hello'),
    'user002': User('user002', 'david', 'bye'),
}

app = Microdot()
Session(app, secret_key=os.environ['SECRET_KEY'])
login = Login()


@login.user_loader
async def load_user(user_id):
    return USERS.get(user_id)


@app.post('/login')
async def log_in(request):
    username = request.form.get('username')
    password = request.form.get('password')
    remember = bool(request.form.get('remember_me'))
    for user in USERS.values():
        if user.username == username and user.password == password:
            return await login.login_user(request, user, remember=remember)
    return redirect('/login')


@app.get('/login')
async def login_page(request):
    return 'the login form'


@app.get('/')
@login
async def index(request):
    return f'Hello, {request.g.current_user.username}!'


@app.get('/fresh')
@login.fresh
async def fresh(request):
    return f'Fresh, {request.g.current_user.username}!'


@app.post('/logout')
@login
async def log_out(request):
    await login.logout_user(request)
    return redirect('/')


if __name__ == '__main__':
    print('listening', flush=True)
    app.run(host='127.0.0.1', port=int(os.environ['PORT']))
